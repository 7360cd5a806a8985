"""Generate audio with a WaveNet trained on audio (``cnnzoo train wavenet_small --data DIR``).

examples:
  cnnzoo generate runs/wavenet_small-speech/best.pt --seconds 2 --out babble.wav
  cnnzoo generate best.pt --seconds 1 --seed-audio hello.wav --temperature 0.8 --seed 3 --out more.wav
  cnnzoo generate best.pt --seconds 1 --temperature 0 --out argmax.wav     # no sampling: deterministic

Each sample is drawn from the model's distribution over the 256 μ-law classes (temperature 1, the
default); lower temperatures sharpen it, and 0 takes the most likely class every step, which for an
unconditioned model often settles on one value. Generation runs the incremental path: one step per
layer per sample. Writes a 16-bit WAV at the model's sample rate (the generated samples only, not the
seed audio) and a PNG of its waveform and spectrogram beside it.
"""
from __future__ import annotations

import argparse

from cnnzoo.cli.common import add_generation_arguments
from cnnzoo.training.generation import generate_audio, sampling_description

HELP = "generate audio with a WaveNet checkpoint (WAV + waveform PNG; sampling, or --temperature 0 for argmax)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .pt file written by `cnnzoo train` for a WaveNet on audio")
    parser.add_argument("--seconds", type=float, required=True, help="how much audio to generate")
    parser.add_argument("--out", required=True, metavar="WAV", help="the WAV file to write (a PNG goes beside it)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="1 samples the model's distribution (default), lower is more conservative, "
                             "0 is argmax (deterministic)")
    parser.add_argument("--seed-audio", metavar="FILE", help="continue this audio file (read at the model's rate)")
    add_generation_arguments(parser, "WAV")


def run(args: argparse.Namespace) -> int:
    audio = generate_audio(args.checkpoint, args.seconds, temperature=args.temperature, seed_audio=args.seed_audio,
                           seed=args.seed, condition=args.condition, device=args.device,
                           threads=args.threads)
    written = audio.save(args.out, plot=not args.no_plot)
    how = sampling_description(audio.temperature) + (f", seed {audio.seed}" if audio.temperature else "")
    after = (f" after {audio.seed_samples / audio.sample_rate:.2f} s of {args.seed_audio}" if audio.seed_samples
             else " from silence")
    print(f"{how}")
    print(f"generated {audio.seconds:.2f} s at {audio.sample_rate} Hz ({len(audio.signal):,} samples){after} in "
          f"{audio.generation_s:.1f} s ({audio.samples_per_s:,.0f} samples/s, incremental path)")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
