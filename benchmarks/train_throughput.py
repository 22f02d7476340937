#!/usr/bin/env python
"""Training and evaluation throughput of the project's own training path, variant by variant.

Why this exists: "fast" claims need a number that is what ``python -m lora_agnews train`` gets,
next to what common practice gets, on the same examples. Every variant below is built from
the project's components (``lora_agnews.core.tokens`` tokenizer path and :class:`PadCollator`, the
Trainer's length-grouped order, ``lora_agnews.core.build.build_model`` with the LoRA config of a
profile, ``resolve_precision``, fused AdamW and TF32 on CUDA), and every variant processes the
SAME examples, so examples/s and tokens/s compare directly.

Variants (``--configs``, comma-separated, timed back to back on one model in one process):

* ``baseline``      common practice: pad to 128, fp32, random order, torch AdamW (not fused), no TF32
* ``dynamic``       dynamic padding (project collator), fp32, random order
* ``dynamic_bf16``  dynamic padding + bf16 autocast (where the device has bf16 units), random order
* ``project``       project default: dynamic + length-grouped + bf16 (+ fused AdamW + TF32 on CUDA)
* ``compile``       project default + ``torch.compile`` (sequence dimension marked dynamic)
* ``trainer``       project default driven by the project's own Trainer (``LoraTrainer`` and
                    ``training_arguments``; evaluation/checkpoints off): the Trainer's own overhead
* ``trainer_nosync`` as ``trainer`` with ``logging_nan_inf_filter=False`` (no host sync per step)

Which examples: a full epoch of ``--epoch-size`` examples (default 120,000, drawn with a fixed seed
from the data file's rows) is ordered by ``get_length_grouped_indices`` (mega-batches of 50
batches sorted by length) exactly as the project's Trainer sampler orders it; ``--steps`` of its batches are drawn (seeded), one from each of ``--steps``
equal strata of batch token count. Their union is the timed example set. Length-grouped variants
run those very batches; the other variants run the same examples shuffled and re-batched.
Because the batches are a stratified sample of a full epoch's batches (every length range in
proportion), the grouped figure is not biased toward short batches and projects to a full epoch;
and since every variant processes the same examples (the same real tokens), their examples/s
are directly comparable.

FLOPs (model FLOPs, frozen base + LoRA, stated per example of n tokens in a sequence of width L):
    forward  = 2*N_frozen*n + 2*N_lora*n + 4*layers*hidden*n*L      (linear layers + QK^T and AV)
    backward = 2*N_frozen*n + 4*N_lora*n + 8*layers*hidden*n*L      (input grads only for frozen
               weights; input + weight grads for LoRA; both operands of the attention products)
    train    = forward + backward = 4*N_frozen*n + 6*N_lora*n + 12*layers*hidden*n*L (+ 6*N_head)
N_frozen counts the encoder's linear weights (roberta-base: 84.9M); embeddings are lookups. The
"real" figure uses n = L = the example's real length (useful work); the "padded" figure uses n =
L = the padded batch width (work the device actually executes). Reported TFLOP/s divide by the
measured time. The model ignores layer 0's input gradient (embeddings are frozen): ~1% high.

Peak: CUDA uses the datasheet dense bf16 peak by device name (H100 SXM 989 TFLOP/s; override
with ``--peak-tflops``) and also measures an 8192^3 bf16 matmul. CPU has no datasheet figure
here, so a 2048^3 bf16 and fp32 matmul are measured and the bf16 one is the reference "peak".

Run ``python benchmarks/train_throughput.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runs from a bare copy of the repository (GPU machine), package not installed
    sys.path.insert(0, str(ROOT))

for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lora_agnews.core import config as config_mod  # noqa: E402
from lora_agnews.core.tasks.agnews import read_agnews_csv  # noqa: E402
from lora_agnews.core.tokens import PadCollator, TokenizedDataset, tokenize  # noqa: E402
from lora_agnews.core.evaluate import autocast_context, predict_logits  # noqa: E402
from lora_agnews.core.build import build_model  # noqa: E402
from lora_agnews.core.encoders import build_local_tokenizer, build_tokenizer  # noqa: E402
from lora_agnews.core.precision import resolve_precision  # noqa: E402

SHARED = ROOT.parent / "shared"
DEFAULT_DATA = SHARED / "agnews-subset" / "test.csv"
DEFAULT_TOKENIZER = SHARED / "tokenizers" / "roberta-base"
EPOCH_EXAMPLES = 120_000
TEST_EXAMPLES = 7_600
CUDA_PEAK_BF16 = (  # dense bf16 tensor-core peak, TFLOP/s (datasheets); first match wins
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
)
LORA_SETTINGS = {  # --lora: the paper profile's chosen config, or the starting point's
    "paper": {},
    "start": {"lora_r": 7, "lora_alpha": 32, "lora_targets": "query,key,value", "head": "default"},
}


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One way of running the same training steps."""

    name: str
    label: str
    pad_to_max: bool = False  # pad every batch to max_length (common practice)
    grouped: bool = False  # length-grouped batches (project's sampler)
    mixed: bool = False  # bf16/fp16 autocast per resolve_precision
    fast_cuda: bool = False  # fused AdamW + TF32 on CUDA (project's training_arguments)
    compile: bool = False  # torch.compile
    trainer: bool = False  # drive the steps through the project's Trainer
    nan_filter: bool = True  # Trainer's logging_nan_inf_filter (a host sync per step)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", "pad-128, fp32, random order, AdamW", pad_to_max=True),
    Variant("dynamic", "dynamic padding, fp32, random order"),
    Variant("dynamic_bf16", "dynamic padding + bf16 autocast, random order", mixed=True),
    Variant("project", "project default: dynamic + length-grouped + bf16 (+fused AdamW, TF32)",
            grouped=True, mixed=True, fast_cuda=True),
    Variant("compile", "project default + torch.compile", grouped=True, mixed=True, fast_cuda=True, compile=True),
    Variant("trainer", "project default through the project's Trainer", grouped=True, mixed=True,
            fast_cuda=True, trainer=True),
    Variant("trainer_nosync", "as trainer, logging_nan_inf_filter=False", grouped=True, mixed=True,
            fast_cuda=True, trainer=True, nan_filter=False),
)}
DEFAULT_CONFIGS = "baseline,dynamic,dynamic_bf16,project"


# --------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Variants: " + "; ".join(f"{v.name}: {v.label}" for v in VARIANTS.values()))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="CSV in the AG News layout (label,title,description; no header). Default: %(default)s")
    p.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER),
                   help="tokenizer directory (AutoTokenizer), or 'local' for a word-level one built from --data")
    p.add_argument("--model-shape", choices=("roberta-base", "tiny-roberta"), default="roberta-base",
                   help="randomly initialised architecture (exact for speed)")
    p.add_argument("--lora", choices=tuple(LORA_SETTINGS), default="paper",
                   help="paper: r=18 query,key,value + linear head; start: r=7, default head")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 32 on CPU, 128 on CUDA)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 8 CPU, 150 CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant first (default 1 CPU, 10 CUDA)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the timed passes (interleaved) this many times")
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help=f"comma-separated variants out of {', '.join(VARIANTS)} (default {DEFAULT_CONFIGS})")
    p.add_argument("--epoch-size", type=int, default=EPOCH_EXAMPLES, help="examples of the simulated epoch")
    p.add_argument("--methods", default="",
                   help="also time these PEFT methods (comma-separated, e.g. lora,pissa,vera,loha,ia3,bitfit,"
                        "layernorm,prompt) at their largest size within the budget: examples/s relative to LoRA")
    p.add_argument("--quantize", default="",
                   help="also time the project variant on quantized frozen bases (comma-separated: nf4,fp4,int8), "
                        "against full precision in the same process: examples/s, peak memory, the base's bytes")
    p.add_argument("--eval", action="store_true", help="also time evaluation (predict_logits, merged vs unmerged)")
    p.add_argument("--eval-examples", type=int, default=None, help=f"default {TEST_EXAMPLES} on CUDA, 256 on CPU")
    p.add_argument("--eval-batch-size", type=int, default=None, help="default: the profile's (512) on CUDA, 64 on CPU")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 peak (TFLOP/s) to compare with")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N steps of the project variant (torch.profiler): host- or device-bound?")
    p.add_argument("--json", type=Path, default=None, help="write all figures to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests): seconds, numbers meaningless")
    args = p.parse_args(argv)
    return finish_args(args, p)


def finish_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Device-dependent defaults and validation (names the bad option and the fix)."""
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu")
    cuda = args.device == "cuda"
    quick = {"batch_size": 4, "steps": 2, "warmup": 1, "eval_examples": 24, "eval_batch_size": 8}
    normal = {"batch_size": 128 if cuda else 32, "steps": 150 if cuda else 8, "warmup": 10 if cuda else 1,
              "eval_examples": TEST_EXAMPLES if cuda else 256, "eval_batch_size": 512 if cuda else 64}
    for key, value in (quick if args.quick else normal).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick and args.epoch_size == EPOCH_EXAMPLES:
        args.epoch_size = 2000
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in VARIANTS]
    if unknown or not names:
        parser.error(f"--configs: unknown variant(s) {unknown or '(none given)'}; choose from {', '.join(VARIANTS)}")
    args.variants = [VARIANTS[c] for c in names]
    for key in ("batch_size", "steps", "rounds", "eval_examples", "eval_batch_size"):
        if getattr(args, key) <= 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.epoch_size < args.batch_size * (args.steps + args.warmup):
        parser.error("--epoch-size must hold at least (steps + warmup) batches; raise it or lower --steps")
    if not args.data.is_file():
        parser.error(f"--data {args.data} does not exist; pass a CSV in the AG News layout "
                     f"(e.g. ../shared/agnews-subset/test.csv)")
    return args


# --------------------------------------------------------------------------- data
@dataclass
class Workload:
    """The sampled epoch's token ids and the batches every variant runs."""

    dataset: TokenizedDataset  # the simulated epoch (index = position in the epoch)
    grouped_timed: list[list[int]]  # batches drawn from the length-grouped epoch order
    grouped_warm: list[list[int]]
    shuffled_timed: list[list[int]]  # the same examples, random order, re-batched
    shuffled_warm: list[list[int]]
    row_lengths: np.ndarray  # token count of every row of the data file
    row_ids: list[list[int]]
    row_labels: list[int]
    mega_batch_mult: int


def load_rows(path: Path, tokenizer: Any, max_length: int) -> tuple[list[list[int]], list[int]]:
    """Token ids (project tokenizer path, truncated to max_length, no cache writes) and labels."""
    frame = read_agnews_csv(path)
    ids = tokenize(frame["text"].tolist(), tokenizer, max_length, cache=False)
    return ids, frame["label"].astype(int).tolist()


def grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """The index order the project's Trainer draws (its sampler calls this transformers function)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    return list(get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(seed)))


def build_workload(row_ids: list[list[int]], row_labels: list[int], args: argparse.Namespace) -> Workload:
    """Sample an epoch, order it like the Trainer, draw the timed and warm-up batches."""
    rng = np.random.default_rng(args.seed)
    pool = rng.choice(len(row_ids), size=args.epoch_size, replace=args.epoch_size > len(row_ids))
    dataset = TokenizedDataset([row_ids[r] for r in pool], [row_labels[r] for r in pool])
    lengths = dataset.lengths
    bs = args.batch_size
    order = grouped_order(lengths, bs, args.seed)
    full = [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)]  # whole batches only
    pick = stratified_pick(full, lengths, args.steps, rng)
    rest = np.setdiff1d(np.arange(len(full)), pick)
    timed = [full[i] for i in rng.permutation(pick)]
    warm = [full[i] for i in rng.choice(rest, size=args.warmup, replace=False)]
    mult = min(len(lengths) // (bs * 4), 50) or 1
    return Workload(dataset, timed, warm, _reshuffle(timed, rng), _reshuffle(warm, rng),
                    np.asarray([len(x) for x in row_ids]), row_ids, row_labels, mult)


def stratified_pick(batches: list[list[int]], lengths: list[int], k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` batches, one drawn at random from each of ``k`` equal strata of batch token count.

    Unbiased for the epoch's mean cost like a uniform draw (equal strata, one draw each), with
    far less variance: grouped batches range from ~20 to ~128 tokens per example, and 8 uniform
    draws leave the sample's mean length off by 9% (sd, batch 32, 8 draws); stratified by 3%.
    Strata are equal-width in rank (fractional borders), so every batch has the same chance
    k/n of being drawn (unbiased); a batch straddling a border can rarely be drawn twice.
    """
    tokens = np.asarray([sum(lengths[i] for i in b) for b in batches])
    ranked = np.argsort(tokens, kind="stable")
    pos = np.floor((np.arange(k) + rng.random(k)) * len(ranked) / k).astype(int)
    return ranked[np.minimum(pos, len(ranked) - 1)]


def _reshuffle(batches: list[list[int]], rng: np.random.Generator) -> list[list[int]]:
    flat = np.asarray([i for b in batches for i in b])
    flat = flat[rng.permutation(len(flat))].tolist()
    bs = len(batches[0]) if batches else 1
    return [flat[i:i + bs] for i in range(0, len(flat), bs)]


class CountingCollator:
    """Wraps the project's collator and counts real / padded tokens (for FLOPs and pad fraction)."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]):
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.examples = self.real = self.real_sq = self.padded = self.padded_sq = 0

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = self.inner(batch)
        n = out["attention_mask"].sum(dim=1)
        rows, width = out["input_ids"].shape
        self.examples += rows
        self.real += int(n.sum())
        self.real_sq += int((n * n).sum())
        self.padded += rows * width
        self.padded_sq += rows * width * width
        return out

    def counts(self) -> dict[str, int]:
        return {"examples": self.examples, "real_tokens": self.real, "real_tokens_sq": self.real_sq,
                "padded_tokens": self.padded, "padded_tokens_sq": self.padded_sq}


# --------------------------------------------------------------------------- FLOPs
@dataclass(frozen=True)
class FlopModel:
    """Parameter counts that the FLOP formula in the module docstring needs."""

    frozen_linear: int
    lora_linear: int
    head: int
    layers: int
    hidden: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> "FlopModel":
        frozen = lora = head = 0
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            n = module.weight.numel()
            if "classifier" in name:
                head += n if module.weight.requires_grad else 0
            elif ".encoder.layer." in f".{name}":
                if module.weight.requires_grad:
                    lora += n
                else:
                    frozen += n
        cfg = model.config if hasattr(model, "config") else model.base_model.model.config
        return cls(frozen, lora, head, int(cfg.num_hidden_layers), int(cfg.hidden_size))

    def train_flops(self, tokens: int, tokens_sq: int, examples: int) -> float:
        """Forward + backward FLOPs for ``tokens`` tokens whose squared lengths sum to ``tokens_sq``."""
        return (4.0 * self.frozen_linear * tokens + 6.0 * self.lora_linear * tokens
                + 12.0 * self.layers * self.hidden * tokens_sq + 6.0 * self.head * examples)

    def forward_flops(self, tokens: int, tokens_sq: int, examples: int) -> float:
        return (2.0 * (self.frozen_linear + self.lora_linear) * tokens
                + 4.0 * self.layers * self.hidden * tokens_sq + 2.0 * self.head * examples)

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self),
                "train_formula": "4*frozen_linear*n + 6*lora_linear*n + 12*layers*hidden*n*L + 6*head per example",
                "forward_formula": "2*(frozen_linear+lora_linear)*n + 4*layers*hidden*n*L + 2*head per example",
                "real": "n = L = real (non-pad) length", "padded": "n = L = padded batch width",
                "gflop_per_token_linear_train": 4e-9 * self.frozen_linear + 6e-9 * self.lora_linear}


# --------------------------------------------------------------------------- device
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(enable: bool) -> None:
    """Same switch the Trainer flips for ``tf32=True`` (CUDA only)."""
    try:
        from transformers.utils.import_utils import enable_tf32

        enable_tf32(enable)
    except ImportError:
        torch.backends.cuda.matmul.allow_tf32 = enable
        torch.backends.cudnn.allow_tf32 = enable


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Measured n^3 matmul rate: the ceiling the model's matmuls can approach."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2.0 * n ** 3 * reps / (time.perf_counter() - start) / 1e12


def device_info(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Name, peaks (datasheet and measured) and what "peak" means here."""
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        n, reps = (1024, 3) if args.quick else (8192, 20)
        set_tf32(False)
        info.update(name=name, cuda=torch.version.cuda, host_cpu=_cpu_name(),
                    matmul_bf16_tflops=matmul_tflops(device, torch.bfloat16, n, reps),
                    matmul_fp32_tflops=matmul_tflops(device, torch.float32, n // 2, reps))
        sheet = next((v for k, v in CUDA_PEAK_BF16 if k in name), None)
        peak = args.peak_tflops or sheet or info["matmul_bf16_tflops"]
        source = ("--peak-tflops" if args.peak_tflops else "datasheet dense bf16" if sheet
                  else "measured bf16 matmul (device not in the datasheet table)")
    else:
        n, reps = (256, 2) if args.quick else (2048, 4)
        units = bool(resolve_precision(config_mod.Config(precision="auto", device="cpu"), device) == "bf16")
        # Without bf16 units (AVX2 only) a bf16 matmul is emulated: minutes for 2048^3, and not a ceiling the
        # training path (fp32 there) can approach. The fp32 matmul is then the reference.
        bf16 = matmul_tflops(device, torch.bfloat16, n if units else 256, reps)
        info.update(name=_cpu_name(), matmul_bf16_tflops=bf16, matmul_fp32_tflops=matmul_tflops(device, torch.float32, n, reps),
                    bf16_units=units)
        peak = args.peak_tflops or (bf16 if units else info["matmul_fp32_tflops"])
        source = ("--peak-tflops" if args.peak_tflops else
                  f"measured {n}^3 {'bf16' if units else 'fp32 (no bf16 units)'} matmul on this CPU (no datasheet)")
    info.update(peak_bf16_tflops=float(peak), peak_source=source)
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    return platform.processor() or platform.machine()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: "5" resets the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20, "torch.cuda.max_memory_allocated"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "peak RSS of the process (VmHWM, reset per variant)"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss (process lifetime peak)"


# --------------------------------------------------------------------------- training steps
@dataclass
class Runner:
    """Model, data and settings shared by all variants."""

    model: torch.nn.Module
    cfg: Any
    device: torch.device
    precision: str  # what resolve_precision gives for mixed variants
    work: Workload
    pad_id: int
    flops: FlopModel
    args: argparse.Namespace
    compiled: Any = None
    notes: list[str] = field(default_factory=list)
    vocab_size: int = 0


BASELINE_LENGTH = 128  # common practice: truncate and pad every example to 128 tokens


class TruncateTo:
    """Cut each example to ``length`` tokens, keeping its final end-of-sequence token (as a tokenizer's
    ``truncation=True, max_length=length`` would), before the inner collator pads."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]], length: int):
        self.inner, self.length = inner, int(length)

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        cut = [{**item, "input_ids": list(item["input_ids"][: self.length - 1]) + [item["input_ids"][-1]]}
               if len(item["input_ids"]) > self.length else item for item in batch]
        return self.inner(cut)


def collator_for(r: Runner, v: Variant) -> CountingCollator:
    """Project collator: the baseline truncates and pads every example to 128 tokens (common practice,
    whatever the project's own ``max_length``); the others pad per batch (multiple of 8 on CUDA, as fit())."""
    if v.pad_to_max:
        return CountingCollator(TruncateTo(PadCollator(r.pad_id, multiple=BASELINE_LENGTH), BASELINE_LENGTH))
    return CountingCollator(PadCollator(r.pad_id, multiple=8 if r.device.type == "cuda" else 1))


def loader(r: Runner, batches: list[list[int]], collate: CountingCollator) -> Iterable[dict[str, torch.Tensor]]:
    """A DataLoader like the Trainer's (main-process collation, pinned memory on CUDA)."""
    return torch.utils.data.DataLoader(r.work.dataset, batch_sampler=batches, collate_fn=collate,
                                       num_workers=0, pin_memory=r.device.type == "cuda")


def make_optimizer(r: Runner, v: Variant, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with the Trainer's parameter groups and schedule; fused on CUDA for project variants."""
    from transformers import get_scheduler

    named = [(n, p) for n, p in r.model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in named if "bias" in n or "LayerNorm" in n or "layer_norm" in n]
    decay = [p for n, p in named if not ("bias" in n or "LayerNorm" in n or "layer_norm" in n)]
    groups = [{"params": decay, "weight_decay": r.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if (v.fast_cuda and r.device.type == "cuda") else {}
    opt = torch.optim.AdamW(groups, lr=r.cfg.learning_rate, **extra)
    kind = r.cfg.scheduler if r.cfg.scheduler != "constant" else "constant_with_warmup"
    sched = get_scheduler(kind, opt, num_warmup_steps=math.ceil(r.cfg.warmup * total_steps),
                          num_training_steps=total_steps)
    return opt, sched


def variant_precision(r: Runner, v: Variant) -> str:
    return r.precision if v.mixed else "fp32"


def forward_model(r: Runner, v: Variant) -> Any:
    """The eager model, or the compiled one (built once, sequence dimension dynamic)."""
    if not v.compile:
        return r.model
    if r.compiled is None:
        r.compiled = torch.compile(r.model)
    return r.compiled


def train_step(model: Any, batch: dict[str, torch.Tensor], r: Runner, v: Variant, opt: torch.optim.Optimizer,
               sched: Any, scaler: Any) -> None:
    """One optimizer step as the Trainer does it: forward+loss, backward, clip 1.0, step, schedule, zero."""
    non_blocking = r.device.type == "cuda"
    batch = {k: t.to(r.device, non_blocking=non_blocking) for k, t in batch.items()}
    if v.compile:
        for key in ("input_ids", "attention_mask"):
            torch._dynamo.maybe_mark_dynamic(batch[key], 1)
    with autocast_context(r.device, variant_precision(r, v)):
        loss = model(**batch).loss
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    params = [p for g in opt.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)  # TrainingArguments.max_grad_norm default
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def run_loop(r: Runner, v: Variant, batches: list[list[int]]) -> dict[str, Any]:
    """Run ``batches`` with variant ``v``; returns seconds, counts and peak memory."""
    cuda = r.device.type == "cuda"
    if cuda:
        set_tf32(v.fast_cuda)
    collate = collator_for(r, v)
    if v.trainer:
        return run_trainer(r, v, batches, collate)
    opt, sched = make_optimizer(r, v, total_steps=len(batches))
    scaler = torch.amp.GradScaler("cuda") if (cuda and variant_precision(r, v) == "fp16") else None
    model = forward_model(r, v)
    r.model.train()
    reset_peak_memory(r.device)
    sync(r.device)
    start = time.perf_counter()
    for batch in loader(r, batches, collate):
        train_step(model, batch, r, v, opt, sched, scaler)
    sync(r.device)
    seconds = time.perf_counter() - start
    mem, mem_kind = peak_memory_mb(r.device)
    return {"seconds": seconds, **collate.counts(), "peak_memory_mb": mem, "memory_kind": mem_kind,
            "optimizer": "AdamW (fused)" if opt.defaults.get("fused") else "AdamW (torch)",
            "precision": variant_precision(r, v)}


# --------------------------------------------------------------------------- Trainer variant
def run_trainer(r: Runner, v: Variant, batches: list[list[int]], collate: CountingCollator) -> dict[str, Any]:
    """The same batches through the project's LoraTrainer with the project's TrainingArguments.

    Evaluation and checkpoints are switched off (they are not training-step time); the
    sampler is replaced by the fixed batch list so the Trainer sees the very batches the
    ``project`` variant ran. Timed from the first step's start to the last step's end.
    """
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from lora_agnews.core.trainer import LoraTrainer, training_arguments

    flat = [i for b in batches for i in b]
    subset = TokenizedDataset([r.work.dataset.input_ids[i] for i in flat], [r.work.dataset.labels[i] for i in flat])
    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if "start" not in clock:  # the first batch is already collated (and counted) by now
                sync(r.device)
                reset_peak_memory(r.device)
                clock["start"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == len(batches):
                sync(r.device)
                clock["end"] = time.perf_counter()

    class FixedOrderTrainer(LoraTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return list(range(len(flat)))  # batches are consecutive runs of batch_size in `subset`

    with tempfile.TemporaryDirectory() as tmp:
        targs = training_arguments(r.cfg, Path(tmp), len(subset), r.device, r.precision)
        targs = dataclasses.replace(targs, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                                    num_train_epochs=1, max_steps=len(batches), disable_tqdm=True,
                                    logging_nan_inf_filter=v.nan_filter)
        trainer = FixedOrderTrainer(model=r.model, args=targs, train_dataset=subset, data_collator=collate,
                                    callbacks=[Clock()], group_by_length=True)
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        try:
            trainer.train()
        finally:  # accelerate patched model.forward with autocast and marked the model prepared: undo
            for key in ("forward", "_original_forward", "_is_accelerate_prepared"):  # both, or the next
                r.model.__dict__.pop(key, None)  # Trainer would skip preparing and run without autocast
    seconds = clock["end"] - clock["start"]
    mem, mem_kind = peak_memory_mb(r.device)
    counts = collate.counts()
    return {"seconds": seconds, **counts, "peak_memory_mb": mem, "memory_kind": mem_kind,
            "optimizer": f"Trainer optim={getattr(targs.optim, 'value', targs.optim)}", "precision": r.precision}


# --------------------------------------------------------------------------- variants driver
def run_variant(r: Runner, v: Variant, first_round: bool) -> dict[str, Any]:
    """Warm up (first round only), then one timed pass over the timed batches."""
    timed, warm = ((r.work.grouped_timed, r.work.grouped_warm) if v.grouped
                   else (r.work.shuffled_timed, r.work.shuffled_warm))
    warm_s = None
    if first_round and warm:
        start = time.perf_counter()
        run_loop(r, v, warm)
        warm_s = time.perf_counter() - start
    with matmul_dtype_probe(r.model, enabled=not v.compile) as seen:
        result = run_loop(r, v, timed)
    result["warmup_seconds"] = warm_s
    result["matmul_output_dtypes"] = sorted(seen) if not v.compile else ["not probed (compiled)"]
    if v.mixed and r.precision != "fp32" and seen == {"torch.float32"}:
        r.notes.append(f"{v.name}: matmuls ran in float32 although the precision is {r.precision} "
                       f"(autocast not active on this path)")
    return result


@contextlib.contextmanager
def matmul_dtype_probe(model: torch.nn.Module, enabled: bool = True) -> Any:
    """Record the output dtype of the first frozen encoder linear layer: proves autocast was on."""
    seen: set[str] = set()
    layer = next((m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                  and ".encoder.layer." in f".{n}" and not m.weight.requires_grad), None)
    handle = layer.register_forward_hook(lambda mod, inp, out: seen.add(str(out.dtype))) if (enabled and layer) else None
    try:
        yield seen
    finally:
        if handle is not None:
            handle.remove()


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum seconds and counts over rounds; keep per-round seconds to show the spread."""
    out = dict(rounds[0])
    for key in ("seconds", "examples", "real_tokens", "real_tokens_sq", "padded_tokens", "padded_tokens_sq"):
        out[key] = sum(x[key] for x in rounds)
    out["peak_memory_mb"] = max(x["peak_memory_mb"] for x in rounds)
    out["round_seconds"] = [x["seconds"] for x in rounds]
    out["matmul_output_dtypes"] = sorted({d for x in rounds for d in x.get("matmul_output_dtypes", [])})
    return out


def derive(raw: dict[str, Any], r: Runner, peak: float, forward_only: bool = False) -> dict[str, Any]:
    """Rates, FLOP/s, fraction of peak and the projected epoch from raw counts and seconds."""
    s = raw["seconds"]
    flop = r.flops.forward_flops if forward_only else r.flops.train_flops
    real = flop(raw["real_tokens"], raw["real_tokens_sq"], raw["examples"])
    padded = flop(raw["padded_tokens"], raw["padded_tokens_sq"], raw["examples"])
    eps = raw["examples"] / s
    return {**raw,
            "examples_per_s": eps, "real_tokens_per_s": raw["real_tokens"] / s,
            "padded_tokens_per_s": raw["padded_tokens"] / s,
            "padded_fraction": 1.0 - raw["real_tokens"] / raw["padded_tokens"],
            "mean_real_tokens_per_example": raw["real_tokens"] / raw["examples"],
            "tflops_real": real / s / 1e12, "tflops_padded": padded / s / 1e12,
            "frac_peak_real": real / s / 1e12 / peak, "frac_peak_padded": padded / s / 1e12 / peak}


def bench_training(r: Runner, variants: list[Variant], peak: float) -> dict[str, dict[str, Any]]:
    per: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for rnd in range(r.args.rounds):
        for v in variants:
            say(f"round {rnd + 1}/{r.args.rounds}: {v.name} ({v.label})")
            try:
                per[v.name].append(run_variant(r, v, first_round=rnd == 0))
            except Exception as exc:  # one failing variant (e.g. compile) must not lose the others
                r.notes.append(f"{v.name} failed: {type(exc).__name__}: {str(exc)[:300]}")
                say(r.notes[-1])
                per[v.name] = []
                variants = [x for x in variants if x.name != v.name]
    out: dict[str, dict[str, Any]] = {}
    for name, rounds in per.items():
        if not rounds:
            continue
        res = derive(merge_rounds(rounds), r, peak)
        res["label"] = VARIANTS[name].label
        res["epoch_projected_s"] = EPOCH_EXAMPLES / res["examples_per_s"]  # one 120k-example epoch
        res["steps"] = len(r.work.grouped_timed) * len(rounds)
        out[name] = res
    base = out.get("baseline")
    for res in out.values():
        res["speedup_vs_baseline"] = res["examples_per_s"] / base["examples_per_s"] if base else None
    return out


# --------------------------------------------------------------------------- methods
def time_project(r: Runner, cfg: Any, name: str, detail: str, peak: float) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Build ``cfg``'s model and time the ``project`` variant on the runner's examples: (figures, breakdown).

    A failure is noted in the report and returns None, so one method or base failing loses none of the others.
    """
    import dataclasses

    from lora_agnews.core.budget import parameter_breakdown

    try:
        model = build_model(cfg, vocab_size=r.vocab_size, pad_token_id=r.pad_id).to(r.device)
        runner = dataclasses.replace(r, model=model, cfg=cfg, flops=FlopModel.of(model), compiled=None)
        say(f"{name}: {detail}" if detail else name)
        rounds = [run_variant(runner, VARIANTS["project"], first_round=i == 0) for i in range(r.args.rounds)]
    except Exception as exc:
        r.notes.append(f"{name} failed: {type(exc).__name__}: {str(exc)[:300]}")
        say(r.notes[-1])
        return None
    res = derive(merge_rounds(rounds), runner, peak)
    figures = {"examples_per_s": res["examples_per_s"], "peak_memory_mb": res["peak_memory_mb"],
               "epoch_projected_s": EPOCH_EXAMPLES / res["examples_per_s"]}
    return figures, parameter_breakdown(model)


def bench_methods(r: Runner, methods: list[str], peak: float) -> dict[str, dict[str, Any]]:
    """The ``project`` variant for each PEFT method at the largest size within the budget, on the same
    target set, head and examples as the main model: what a method costs per training example.

    Speed only (random init); the FLOP formula assumes LoRA, so methods are compared by examples/s,
    relative to LoRA (measured first, in the same process and on the same batches).
    """
    from lora_agnews.core.budget import largest_rank
    from lora_agnews.core.methods import METHODS
    from lora_agnews.reporting.text import describe_setting

    out: dict[str, dict[str, Any]] = {}
    for method in ["lora", *[m for m in methods if m != "lora"]]:
        cfg = r.cfg.replace(method=method, lora_variant="lora", adalora_target_r=0)
        key = METHODS[method].size_key
        try:
            if key:
                cfg = cfg.replace(**{key: largest_rank(cfg, vocab_size=r.vocab_size)})
        except Exception as exc:  # one method failing must not lose the others
            r.notes.append(f"method {method} failed: {type(exc).__name__}: {str(exc)[:300]}")
            say(r.notes[-1])
            continue
        timed = time_project(r, cfg, f"method {method}", describe_setting(cfg.to_dict()), peak)
        if timed is not None:
            res, breakdown = timed
            out[method] = {"setting": describe_setting(cfg.to_dict()), "trainable_params": breakdown["total"], **res}
    lora = out.get("lora", {}).get("examples_per_s")
    for res in out.values():
        res["relative_to_lora"] = res["examples_per_s"] / lora if lora else None
    return out


# --------------------------------------------------------------------------- quantized bases
def bench_quantize(r: Runner, schemes: list[str], peak: float) -> dict[str, dict[str, Any]]:
    """The ``project`` variant on a full-precision base and on each quantized one (``quantize`` nf4/fp4/int8),
    same setting, same examples, one process: what a quantized frozen encoder costs per training example,
    and what its weights hold (bytes as quantized against float32)."""


    out: dict[str, dict[str, Any]] = {}
    for scheme in ["none", *[s for s in schemes if s != "none"]]:
        timed = time_project(r, r.cfg.replace(quantize=scheme), f"quantize {scheme}", "", peak)
        if timed is not None:
            res, breakdown = timed
            out[scheme] = {**res, "base_mib": breakdown["base_bytes"] / 2 ** 20,
                           "base_fp32_mib": breakdown["base_bytes_fp32"] / 2 ** 20, "trainable_params": breakdown["total"]}
    full = out.get("none", {}).get("examples_per_s")
    for res in out.values():
        res["relative_to_full_precision"] = res["examples_per_s"] / full if full else None
    return out


# --------------------------------------------------------------------------- profile
def profile_steps(r: Runner, n: int) -> dict[str, Any]:
    """torch.profiler over ``n`` project-variant steps: is the step bound by the host or the device?

    ``device_busy_fraction`` = summed GPU kernel time / wall time; far below 1 means the GPU
    waits for Python and kernel launches (the profiler itself adds some host time).
    """
    from torch.profiler import ProfilerActivity, profile

    v = VARIANTS["project"]
    cuda = r.device.type == "cuda"
    if cuda:
        set_tf32(True)
    batches = r.work.grouped_timed[:n]
    collate = collator_for(r, v)
    opt, sched = make_optimizer(r, v, total_steps=len(batches))
    r.model.train()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        sync(r.device)
        start = time.perf_counter()
        for batch in loader(r, batches, collate):
            train_step(r.model, batch, r, v, opt, sched, None)
        sync(r.device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(getattr(e, "device_time", 0.0) or getattr(e, "cuda_time", 0.0) for e in kernels) / 1e6
    averages = prof.key_averages()
    return {"steps": len(batches), "wall_s": wall, "ms_per_step": 1e3 * wall / len(batches),
            "device_busy_s": busy if cuda else None,
            "device_busy_fraction": busy / wall if cuda else None,
            "kernels_per_step": len(kernels) / len(batches) if cuda else None,
            "top_ops_by_self_cpu": _op_table(averages, "self_cpu_time_total"),
            "top_ops_by_self_device": _op_table(averages, "self_cuda_time_total") if cuda else ""}


def _op_table(averages: Any, sort_by: str) -> str:
    try:  # the sort keys' names moved between torch versions; diagnostics must not fail the run
        return averages.table(sort_by=sort_by, row_limit=15)
    except Exception as exc:
        return f"(no table: {type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------- evaluation
def eval_dataset(work: Workload, n: int, seed: int) -> TokenizedDataset:
    """The data file's rows repeated to ``n`` (all rows once per cycle), or a seeded sample of n."""
    rows = len(work.row_ids)
    if n >= rows:
        idx = np.resize(np.arange(rows), n)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return TokenizedDataset([work.row_ids[i] for i in idx], [work.row_labels[i] for i in idx])


def eval_counts(ds: TokenizedDataset, batch_size: int, multiple: int) -> dict[str, int]:
    """Real and padded tokens of predict_logits' length-sorted batches (same batching rule)."""
    lengths = np.sort(np.asarray(ds.lengths))
    counts = {"examples": len(lengths), "real_tokens": int(lengths.sum()),
              "real_tokens_sq": int((lengths ** 2).sum()), "padded_tokens": 0, "padded_tokens_sq": 0}
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start:start + batch_size]
        width = -(-int(chunk.max()) // multiple) * multiple
        counts["padded_tokens"] += len(chunk) * width
        counts["padded_tokens_sq"] += len(chunk) * width * width
    return counts


def time_predict(model: torch.nn.Module, ds: TokenizedDataset, r: Runner) -> tuple[float, np.ndarray, float]:
    bs = r.args.eval_batch_size
    warm = TokenizedDataset(sorted(ds.input_ids, key=len)[-min(len(ds), 2 * bs):], [0] * min(len(ds), 2 * bs))
    predict_logits(model, warm, r.pad_id, bs, r.device, r.precision)  # kernels, allocator, autotuning
    reset_peak_memory(r.device)
    sync(r.device)
    start = time.perf_counter()
    logits = predict_logits(model, ds, r.pad_id, bs, r.device, r.precision)
    sync(r.device)
    return time.perf_counter() - start, logits, peak_memory_mb(r.device)[0]


def bench_eval(r: Runner, peak: float) -> dict[str, Any]:
    """predict_logits (length-sorted batches) unmerged, then with LoRA merged (merge_and_unload)."""
    ds = eval_dataset(r.work, r.args.eval_examples, r.args.seed)
    counts = eval_counts(ds, r.args.eval_batch_size, 8 if r.device.type == "cuda" else 1)
    out: dict[str, Any] = {"examples": len(ds), "batch_size": r.args.eval_batch_size, "precision": r.precision}
    results = {}
    for mode in ("unmerged", "merged"):
        model = r.model if mode == "unmerged" else r.model.merge_and_unload()
        say(f"evaluation: {mode} LoRA, {len(ds):,} examples")
        seconds, logits, mem = time_predict(model, ds, r)
        res = derive({"seconds": seconds, **counts}, r, peak, forward_only=True)
        res.update(peak_memory_mb=mem, test_set_projected_s=TEST_EXAMPLES / res["examples_per_s"])
        results[mode] = (res, logits)
        out[mode] = res
    out["max_abs_logit_diff_merged_vs_unmerged"] = float(np.abs(results["merged"][1] - results["unmerged"][1]).max())
    out["merge_speedup"] = out["merged"]["examples_per_s"] / out["unmerged"]["examples_per_s"]
    return out


# --------------------------------------------------------------------------- setup and report
def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def build_config(args: argparse.Namespace) -> Any:
    """The paper profile with a random-init model of the chosen shape and the chosen LoRA settings."""
    overrides = {"model_name": args.model_shape, "init": "random", "tokenizer": args.tokenizer,
                 "device": args.device, "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
                 **LORA_SETTINGS[args.lora]}
    return config_mod.load("paper", overrides)


def versions() -> dict[str, str]:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": np.__version__}
    with contextlib.suppress(ImportError):
        import peft

        out["peft"] = peft.__version__
    return out


def length_stats(lengths: np.ndarray) -> dict[str, float]:
    return {"rows": int(len(lengths)), "mean": float(lengths.mean()), "median": float(np.median(lengths)),
            "p99": float(np.percentile(lengths, 99)), "max": int(lengths.max())}


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked against the measured figures (None where not measured)."""
    train, dev = report["train"], report["device"]["type"]
    proj = train.get("project") or {}
    out: dict[str, Any] = {}
    if dev == "cpu":
        sp = proj.get("speedup_vs_baseline")
        out["cpu_project_speedup_vs_baseline"] = {"target": 4.0, "measured": sp, "met": None if sp is None else sp >= 4.0}
    else:
        best = min((v["epoch_projected_s"] for v in train.values()), default=None)
        ev = report.get("eval", {}).get("merged", {}).get("test_set_projected_s")
        out["gpu_epoch_seconds"] = {"target": 15.0, "measured_project": proj.get("epoch_projected_s"),
                                    "measured_best": best, "met": None if best is None else best <= 15.0}
        out["gpu_eval_7600_seconds"] = {"target": 2.0, "measured": ev, "met": None if ev is None else ev <= 2.0}
        fr = proj.get("frac_peak_real")
        out["gpu_frac_peak_real"] = {"target": 0.40, "measured_project": fr, "met": None if fr is None else fr >= 0.40}
    return out


def summary(report: dict[str, Any]) -> str:
    dev = report["device"]
    s = report["settings"]
    lines = [f"device: {dev['name']} | torch {report['versions']['torch']} | transformers "
             f"{report['versions']['transformers']} | {report['date']}",
             f"model: {s['model_shape']} (random init), LoRA '{s['lora']}' ({s['trainable_params']:,} trainable) | "
             f"batch {s['batch_size']} | {s['timed_steps']} timed steps x {s['rounds']} round(s) = "
             f"{s['timed_examples']:,} examples per variant | precision for mixed variants: {s['precision']}",
             f"peak: {dev['peak_bf16_tflops']:.1f} TFLOP/s bf16 ({dev['peak_source']}); measured matmul "
             f"bf16 {dev['matmul_bf16_tflops']:.2f}, fp32 {dev['matmul_fp32_tflops']:.2f} TFLOP/s",
             "TFLOP/s 'real' counts only real tokens (useful work); 'padded' counts every padded position.", "",
             f"{'variant':<15}{'ex/s':>10}{'real tok/s':>12}{'pad%':>7}{'TFLOP/s real':>14}{'(padded)':>10}"
             f"{'%peak':>7}{'peak MB':>9}{'120k epoch':>12}{'speed-up':>10}"]
    for name, v in report["train"].items():
        sp = f"{v['speedup_vs_baseline']:.2f}x" if v["speedup_vs_baseline"] else "-"
        lines.append(f"{name:<15}{v['examples_per_s']:>10.1f}{v['real_tokens_per_s']:>12.0f}"
                     f"{100 * v['padded_fraction']:>6.1f}%{v['tflops_real']:>14.2f}{v['tflops_padded']:>10.2f}"
                     f"{100 * v['frac_peak_real']:>6.1f}%{v['peak_memory_mb']:>9.0f}"
                     f"{_duration(v['epoch_projected_s']):>12}{sp:>10}")
    ev = report.get("eval")
    if ev:
        lines += ["", f"evaluation: predict_logits, {ev['examples']:,} examples, batch {ev['batch_size']}, "
                      f"{ev['precision']}; max |logit diff| merged vs unmerged {ev['max_abs_logit_diff_merged_vs_unmerged']:.2e}",
                  f"{'mode':<15}{'ex/s':>10}{'pad%':>7}{'TFLOP/s real':>14}{'peak MB':>9}{'7.6k test set':>15}"]
        for mode in ("unmerged", "merged"):
            e = ev[mode]
            lines.append(f"{mode:<15}{e['examples_per_s']:>10.1f}{100 * e['padded_fraction']:>6.1f}%"
                         f"{e['tflops_real']:>14.2f}{e['peak_memory_mb']:>9.0f}{_duration(e['test_set_projected_s']):>15}")
    methods = report.get("methods")
    if methods:
        lines += ["", "methods: the project variant, same examples, each at its largest size within the budget",
                  f"{'method':<11}{'setting':<40}{'trainable':>11}{'ex/s':>9}{'vs LoRA':>9}{'peak MB':>9}{'120k epoch':>12}"]
        for name, m in methods.items():
            rel = f"{m['relative_to_lora']:.2f}x" if m["relative_to_lora"] else "-"
            lines.append(f"{name:<11}{m['setting'][:39]:<40}{m['trainable_params']:>11,}{m['examples_per_s']:>9.1f}"
                         f"{rel:>9}{m['peak_memory_mb']:>9.0f}{_duration(m['epoch_projected_s']):>12}")
    quantized = report.get("quantize")
    if quantized:
        lines += ["", "quantize: the project variant, same setting and examples, on a full-precision and quantized bases",
                  f"{'base':<8}{'base MiB':>10}{'fp32 MiB':>10}{'ex/s':>9}{'vs full':>9}{'peak MB':>9}{'120k epoch':>12}"]
        for name, q in quantized.items():
            rel = f"{q['relative_to_full_precision']:.2f}x" if q["relative_to_full_precision"] else "-"
            lines.append(f"{name:<8}{q['base_mib']:>10.1f}{q['base_fp32_mib']:>10.1f}{q['examples_per_s']:>9.1f}"
                         f"{rel:>9}{q['peak_memory_mb']:>9.0f}{_duration(q['epoch_projected_s']):>12}")
    prof = report.get("profile")
    if prof:
        busy = prof["device_busy_fraction"]
        lines += ["", f"profile: {prof['steps']} project steps, {prof['ms_per_step']:.1f} ms/step under the profiler"
                      + (f"; GPU busy {100 * busy:.0f}% of wall time, {prof['kernels_per_step']:.0f} kernels/step"
                         if busy is not None else ""), prof["top_ops_by_self_cpu"]]
    for name, t in report["targets"].items():
        lines.append(f"target {name}: {json.dumps(t)}")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def setup(args: argparse.Namespace) -> Runner:
    device = torch.device(args.device)
    cfg = build_config(args)
    say(f"tokenizer {args.tokenizer}, data {args.data}")
    if args.tokenizer == "local":
        tokenizer = build_local_tokenizer(read_agnews_csv(args.data)["text"].tolist())
    else:
        tokenizer = build_tokenizer(cfg)
    row_ids, row_labels = load_rows(args.data, tokenizer, cfg.max_length)
    work = build_workload(row_ids, row_labels, args)
    say(f"building {args.model_shape} (random init) with LoRA '{args.lora}' on {device}")
    model = build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).to(device)
    return Runner(model, cfg, device, resolve_precision(cfg, device), work, int(tokenizer.pad_token_id),
                  FlopModel.of(model), args, vocab_size=len(tokenizer))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    r = setup(args)
    dev = device_info(r.device, args)
    from lora_agnews.core.budget import parameter_breakdown

    report: dict[str, Any] = {
        "benchmark": "train_throughput", "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "versions": versions(), "device": dev,
        "settings": {"model_shape": args.model_shape, "lora": args.lora, "lora_r": r.cfg.lora_r,
                     "lora_targets": r.cfg.lora_targets, "head": r.cfg.head,
                     "trainable_params": parameter_breakdown(r.model)["total"], "batch_size": args.batch_size,
                     "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds,
                     "timed_examples": args.steps * args.batch_size, "epoch_size": args.epoch_size,
                     "length_grouped_mega_batch_mult": r.work.mega_batch_mult, "max_length": r.cfg.max_length,
                     "precision": r.precision, "data": str(args.data), "tokenizer": args.tokenizer,
                     "seed": args.seed, "quick": args.quick, "configs": [v.name for v in args.variants]},
        "data": {"file_tokens_per_example": length_stats(r.work.row_lengths)},
        "flop_model": r.flops.describe(), "notes": r.notes,
        "environment": {k: v for k, v in sorted(os.environ.items())
                        if k.startswith(("CUDA_", "TORCH", "PYTORCH_", "OMP_", "MKL_", "KMP_", "HF_", "TOKENIZERS_"))},
    }
    report["train"] = bench_training(r, args.variants, dev["peak_bf16_tflops"])
    if args.profile:
        say(f"profiling {args.profile} project steps")
        try:
            report["profile"] = profile_steps(r, args.profile)
        except Exception as exc:  # diagnostics only
            r.notes.append(f"profile failed: {type(exc).__name__}: {str(exc)[:300]}")
    if args.quantize:
        report["quantize"] = bench_quantize(r, [q.strip() for q in args.quantize.split(",") if q.strip()],
                                            dev["peak_bf16_tflops"])
    if args.methods:
        report["methods"] = bench_methods(r, [m.strip() for m in args.methods.split(",") if m.strip()],
                                          dev["peak_bf16_tflops"])
    if args.eval:
        report["eval"] = bench_eval(r, dev["peak_bf16_tflops"])
    report["targets"] = targets(report)
    report["wall_seconds"] = time.perf_counter() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(summary(report))
    if args.json:
        print(f"JSON: {args.json}")
    return 0 if report["train"] else 1


if __name__ == "__main__":
    sys.exit(main())
