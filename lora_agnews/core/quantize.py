"""QLoRA: the frozen encoder's linear layers held in 4-bit (NF4, FP4) or 8-bit, the adapters in full precision.

bitsandbytes 0.50 runs its 4-bit and 8-bit layers on a CPU as well as on CUDA, so a quantized base is a
configuration key (``quantize``), not a second code path. The encoder is quantized *in place* after the
model is built (``quantize_model``) rather than through ``from_pretrained(quantization_config=...)``: one function
then serves a pretrained checkpoint, a randomly initialised model (the smoke profile, the tests), training,
and the rebuild of a saved adapter's base in a fresh process; quantisation is deterministic, so the rebuilt
base is bit-for-bit the one the adapter was trained on.

What stays in full precision, by design: the classification head (a quantized head cannot be trained:
peft #1720), BERT's pooler and a ``lora-dense`` head's dense layer (head parts, not encoder), the embeddings
and LayerNorms (bitsandbytes quantizes linear layers only), and everything a method trains.
``prepare_model_for_kbit_training`` is not called: it upcasts LayerNorms and embeddings that are float32
here already, and switches on gradient checkpointing, which trades speed for memory the runs do not need.

Merging cannot fold an adapter into 4-bit weights without rounding the sum again, so
:func:`lora_agnews.core.build.dequantize` builds
the full-precision model the quantized one computes (the dequantized weights plus every trained tensor);
merging then proceeds as for any run, and says so.

May import: ``config``, ``methods``. bitsandbytes is imported where a layer is quantized: it is optional (a missing
or broken wheel is a ConfigError naming the fix, not an ImportError), and a model without quantized layers never
needs it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Iterator

import torch
from torch import nn

from .config import Config, ConfigError
from .methods import METHODS

PACKAGE = "bitsandbytes==0.50.2"  # the pin of pyproject.toml and environment.yml
BLOCK = 64  # bitsandbytes' 4-bit block size (one absmax scale per 64 weights)
NESTED_BLOCK = 256  # double quantisation: the absmax scales quantized to 8 bits in blocks of 256


def quantizing(cfg: Config) -> bool:
    return cfg.quantize != "none"


def check_quantizable(cfg: Config) -> None:
    """A method that cannot work on a quantized base is refused with its reason, before anything is built."""
    why = METHODS[cfg.method].not_on_quantized
    if quantizing(cfg) and why:
        can = [name + (" with any lora_variant" if m.lora else "") for name, m in METHODS.items() if not m.not_on_quantized]
        raise ConfigError(f"method {cfg.method!r} cannot train on a quantized base (quantize {cfg.quantize}): "
                          f"{why}. Use -p quantize none, or a method that can ({', '.join(can)}).")


@functools.lru_cache(maxsize=4)
def _probe(device_type: str) -> str:
    """'' when bitsandbytes quantizes and runs a 4-bit layer on ``device_type``, else why not."""
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a wheel without this platform's library
        return f"bitsandbytes cannot be imported ({type(exc).__name__}: {str(exc)[:160]})"
    try:
        layer = _linear4bit(nn.Linear(BLOCK, 8), "nf4", False, torch.float32, bnb).to(device_type)
        layer(torch.zeros(1, BLOCK, device=device_type))
    except Exception as exc:
        return f"bitsandbytes {bnb.__version__} cannot run a 4-bit layer on {device_type} ({type(exc).__name__}: {str(exc)[:160]})"
    return ""


def require_quantization(cfg: Config, device: torch.device | str = "cpu") -> None:
    """``quantize`` other than none needs a working bitsandbytes on the device: else a ConfigError naming the fix.

    Called before a run directory is touched, so a refused run writes nothing.
    """
    if not quantizing(cfg):
        return
    check_quantizable(cfg)
    problem = _probe(torch.device(device).type)
    if problem:
        raise ConfigError(f"parameter 'quantize' {cfg.quantize!r} needs bitsandbytes: {problem}. Install it with "
                          f"`pip install {PACKAGE}` (Linux or Windows, x86-64 CPU or CUDA), or use -p quantize none.")


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the 4-bit layers dequantize to for their matmul: the run's precision (fp32 on CPUs without bf16)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def _linear4bit(linear: nn.Linear, scheme: str, double: bool, dtype: torch.dtype, bnb: Any) -> nn.Module:
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=dtype, compress_statistics=double, quant_type=scheme,
                              device=torch.device("meta"))
    layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type=scheme,
                                     compress_statistics=double)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer


def keep_layout(model: nn.Module) -> None:
    """Keep every 4-bit layer of ``model`` in the layout it was quantized in, on every CPU.

    On a CPU with AVX512-BF16, bitsandbytes 0.50's ``Linear4bit.forward`` repacks its weight *in place*
    into an inference layout the first time it runs in eval mode without gradients: the block scales are
    rounded to bfloat16, and from then on the layer runs an inference kernel that has no backward (the
    gradient to the layer's input is silently dropped). The Trainer evaluates in the middle of training,
    so every later step trained with the wrong gradients on a base that was no longer the one quantized,
    and saving a checkpoint converts it back only "best effort" (the scales stay rounded). A model that
    trains, and the same model rebuilt from its adapter in a fresh process, must compute alike: one
    layout, the one ``quantize_model`` made, everywhere. The flag is per layer, so the tests can force the path on
    CPUs that lack the instructions.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def check_layout(model: nn.Module) -> None:
    """Refuse a model whose 4-bit layers were repacked (see ``keep_layout``): its numbers are not the adapter's."""
    packed = [name for name, m in model.named_modules() if is_repacked(m)]
    if packed:
        raise RuntimeError(f"{len(packed)} 4-bit layers were repacked for CPU inference (first: {packed[0]}); "
                           f"their block scales were rounded: rebuild the model with quantize_model")


def is_repacked(module: nn.Module) -> bool:
    """Whether bitsandbytes has converted this layer's weight to its CPU inference layout."""
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


@functools.lru_cache(maxsize=1)
def _frozen_bias_int8(bnb: Any) -> type:
    """bitsandbytes' 8-bit layer, except that a forward pass never rewrites its bias.

    ``Linear8bitLt.forward`` casts its bias *in place* to the input's dtype (``bias.data = bias.data.to(x.dtype)``).
    Under bf16 autocast the layers see float32 inputs in some passes and bfloat16 in others (training and
    scoring run different kernels), so the first bfloat16 input rounds the frozen bias for good, at a moment
    that depends on the order of passes: a model trained in the Trainer and the same model rebuilt from its
    adapter in a fresh process then computed with different biases (labels 99.7% alike). Casting a copy per
    call gives every pass the bias bitsandbytes would have used on that input, with no history.
    """

    class Linear8bitLt(bnb.nn.Linear8bitLt):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.state.is_training = self.training
            if self.weight.CB is not None:
                self.init_8bit_state()
            bias = None if self.bias is None else self.bias.to(x.dtype)
            out = bnb.matmul(x, self.weight, bias=bias, state=self.state)
            if not self.state.has_fp16_weights and self.state.CB is not None:
                self.weight.data = self.state.CB
            return out

    Linear8bitLt.__module__ = __name__
    return Linear8bitLt


def _linear8bit(linear: nn.Linear, bnb: Any) -> nn.Module:
    # threshold 0: every column in int8 (no fp16 outlier columns), the layer's memory is what it says
    layer = _frozen_bias_int8(bnb)(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                   has_fp16_weights=False, threshold=0.0, device=torch.device("meta"))
    layer.weight = bnb.nn.Int8Params(linear.weight.data, requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer


def quantized_names(model: nn.Module) -> list[str]:
    """The linear layers ``quantize_model`` quantizes: the encoder's (embeddings, attention, FFN), never a head part.

    The encoder is the module under ``base_model_prefix``; its pooler (BERT) belongs to the head. A method
    wraps nothing yet when this is called (quantisation comes before PEFT), so plain ``nn.Linear`` is exact.
    """
    prefix = model.base_model_prefix + "."
    return [name for name, module in model.named_modules()
            if type(module) is nn.Linear and name.startswith(prefix) and ".pooler" not in name]


def quantize_model(model: nn.Module, cfg: Config, precision: str = "fp32") -> nn.Module:
    """Quantize ``model``'s encoder linear layers in place (a no-op for ``quantize none``).

    Call after the head is set up and before the method is applied: PEFT then wraps the quantized layers
    with its bitsandbytes layers (it reads ``is_loaded_in_4bit`` / ``is_loaded_in_8bit``).
    """
    if not quantizing(cfg):
        return model
    import bitsandbytes as bnb

    _quiet_int8_cast()
    dtype = compute_dtype(precision)
    for name in quantized_names(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        device = linear.weight.device
        new = _linear8bit(linear, bnb) if cfg.quantize == "int8" else \
            _linear4bit(linear, cfg.quantize, cfg.quantize_double, dtype, bnb)
        setattr(parent, child, new.to(device))  # moving the parameter is what quantizes it
    keep_layout(model)
    model.is_loaded_in_4bit = cfg.quantize != "int8"
    model.is_loaded_in_8bit = cfg.quantize == "int8"
    model.lora_agnews_config = cfg.to_dict()  # what merging rebuilds in full precision (dequantize)
    return model


class _DropCastNotice(logging.Filter):
    """bitsandbytes logs, on every int8 matmul on a CPU, that float32 inputs are cast to float16: once is news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast from" not in record.getMessage()


def _quiet_int8_cast() -> None:
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in log.filters):
        log.filters.append(_DropCastNotice())


def unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (the model itself when it has none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def scheme_of(model: nn.Module) -> str:
    """The ``quantize`` scheme :func:`quantize_model` recorded on the model's base ("none" when it did not run)."""
    return str(getattr(unwrapped(model), "lora_agnews_config", {}).get("quantize", "none"))


def is_quantized(model: nn.Module) -> bool:
    return any(_is_bnb_layer(m) for m in model.modules())


def _is_bnb_layer(module: nn.Module) -> bool:
    # by the class's ancestry, so that a model without a quantized layer never imports bitsandbytes
    return any(kind.__module__.startswith("bitsandbytes") and kind.__name__ in ("Linear4bit", "Linear8bitLt")
               for kind in type(module).__mro__)


def _state_tensors(weight: Any) -> Iterator[torch.Tensor]:
    """The tensors a quantized weight is held as: its packed data and the quantisation state."""
    yield weight.data
    state = getattr(weight, "quant_state", None)
    if state is not None:  # 4-bit: absmax (or nested absmax + its own code), the code; not the serialised header
        for key, value in state.as_dict(packed=True).items():
            if torch.is_tensor(value) and not key.startswith("quant_state."):
                yield value
    scb = getattr(weight, "SCB", None)
    if scb is not None:  # 8-bit: one scale per output row
        yield scb


def logical_numel(p: torch.Tensor) -> int:
    """The parameter's number of weights (a packed 4-bit weight holds two per byte: peft #733 halves them)."""
    state = getattr(p, "quant_state", None)
    return int(state.shape.numel()) if state is not None else p.numel()


def base_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the frozen parameters as held (quantized where they are) and as they would be at float32.

    PEFT's frozen copy of a trained head (``original_module``) is not part of the base, as in the counts.
    """
    held = fp32 = 0
    for name, p in model.named_parameters():
        if p.requires_grad or ".original_module." in name:
            continue
        fp32 += 4 * logical_numel(p)
        held += sum(t.numel() * t.element_size() for t in _state_tensors(p))
    for module in model.modules():  # after a forward pass an 8-bit layer keeps its row scales in its state
        state = getattr(module, "state", None)
        if _is_bnb_layer(module) and getattr(module.weight, "SCB", None) is None and getattr(state, "SCB", None) is not None:
            held += state.SCB.numel() * state.SCB.element_size()
    return {"base_bytes": held, "base_bytes_fp32": fp32}


def weight_bytes(out_features: int, in_features: int, scheme: str, double: bool = False) -> int:
    """The bytes bitsandbytes holds one quantized weight matrix in (tested against ``base_bytes``).

    4-bit: two weights per byte, one float32 absmax per block of 64 and the 16-entry code (float32); with
    double quantisation the absmax are uint8, in blocks of 256 with a float32 absmax each and a 256-entry
    float32 code. 8-bit: one byte per weight, one float32 scale per output row. The few hundred bytes of
    header that bitsandbytes writes when it serialises a state are not held in memory and not counted.
    """
    n = out_features * in_features
    if scheme == "int8":
        return n + 4 * out_features
    blocks = -(-n // BLOCK)
    packed = -(-n // 2)
    if double:
        nested = -(-blocks // NESTED_BLOCK)
        scales = blocks + 4 * nested + 4 * 256
    else:
        scales = 4 * blocks
    return packed + scales + 4 * 16


def estimated_base_bytes(model: nn.Module, cfg: Config) -> dict[str, int]:
    """``base_bytes`` of ``model`` once quantized by ``cfg``, from shapes only (the model may be on the meta device)."""
    plain = base_bytes(model)
    if not quantizing(cfg):
        return plain
    inner = unwrapped(model)  # PEFT wraps the layers
    saved = 0
    for name in quantized_names(inner):
        linear = inner.get_submodule(name)
        if linear.weight.requires_grad:
            continue
        saved += 4 * linear.weight.numel() - weight_bytes(linear.out_features, linear.in_features,
                                                          cfg.quantize, cfg.quantize_double)
    return {"base_bytes": plain["base_bytes"] - saved, "base_bytes_fp32": plain["base_bytes_fp32"]}


def dequantize_weight(module: nn.Module) -> torch.Tensor:
    """The float32 weight a bitsandbytes layer computes with."""
    # peft takes about 3 s to import (measured on 2 cores): imported where a quantized model is merged, not by counting
    from peft.utils.integrations import dequantize_bnb_weight

    return dequantize_bnb_weight(module.weight, state=getattr(module, "state", None)).float()


def fill_dequantized(plain: nn.Module, model: nn.Module) -> nn.Module:
    """Fill ``plain`` (the same method and head built with ``quantize none``) from the quantized ``model``.

    Every tensor is taken from ``model``: the dequantized base weights where a layer is quantized, every other
    tensor (embeddings, LayerNorms, the adapter, the head) as it is. ``plain`` then computes what ``model``
    computes, up to the quantized matmuls' own rounding (int8 also rounds the activations to 8 bits), which
    the merging tests bound.
    """
    source = model.state_dict()
    bnb_layers = {name: m for name, m in model.named_modules() if _is_bnb_layer(m)}
    state = {}
    for key, value in plain.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if owner in bnb_layers and leaf == "weight":
            state[key] = dequantize_weight(bnb_layers[owner]).to(value.dtype)
        elif key in source and source[key].shape == value.shape:
            state[key] = source[key]
        else:
            raise RuntimeError(f"cannot dequantize: the quantized model has no tensor {key} of shape {tuple(value.shape)}")
    plain.load_state_dict(state)
    return plain.to(next(model.parameters()).device)
