"""What ``cnnzoo export`` can write, named without importing the exporters: the command line offers
these choices, and building its parser must not load onnx and onnxruntime."""

FORMATS = ("onnx", "pt2")
QUANTIZATIONS = ("int8",)
RUNTIMES = ("torch", "torch-folded", "onnxruntime", "int8")  # what a model can be timed under
SUFFIXES = {("onnx", None): ".onnx", ("onnx", "int8"): ".int8.onnx", ("pt2", None): ".pt2"}
