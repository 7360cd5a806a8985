"""Training, evaluation and prediction.

    from cnnzoo.training import train, evaluate, predict
    result = train(model="resnet18")                 # built-in digits, defaults that learn
    print(result.best_val_acc, result.out_dir)       # best.pt, last.pt, history.csv/json, curves.png
    metrics = evaluate(f"{result.out_dir}/best.pt")  # accuracy, per-class precision/recall, confusion
    predict(f"{result.out_dir}/best.pt", ["seven.png"])
"""
from cnnzoo.checkpoint import Checkpoint, EpochRecord, build_model_from_checkpoint, load_checkpoint, save_checkpoint
from cnnzoo.training.budget import epochs_within_budget, estimate_epoch_seconds
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.evaluate import EvalResult, evaluate
from cnnzoo.training.lr_find import LrFindResult, find_lr
from cnnzoo.training.predict import Prediction, predict
from cnnzoo.training.tasks import Task, task_for_model
from cnnzoo.training.trainer import TrainingDiverged, TrainResult, resolved_config, train

__all__ = ["TrainConfig", "train", "TrainResult", "TrainingDiverged", "Checkpoint", "EpochRecord", "load_checkpoint",
           "save_checkpoint", "build_model_from_checkpoint", "evaluate", "EvalResult", "predict", "Prediction", "Task",
           "task_for_model", "resolved_config", "estimate_epoch_seconds", "epochs_within_budget", "find_lr",
           "LrFindResult"]
