"""GPU training throughput of a ~1B Llama on packed 4096-token batches, and an FSDP wrap check.

Needs only torch, transformers and accelerate (no TRL, no download): the model is built
from a config with random weights, the batches are random token ids cut into documents
of random lengths and packed into one 4096-token row, each document attending only to
itself (position ids restart at every document boundary, as TRL's padding-free
collator does).

    python bench/gpu_sft.py                         # on a GPU: ~2-3 minutes
    python bench/gpu_sft.py --device cpu --tiny --steps 2 --warmup 1 --skip_fsdp   # smoke run anywhere
    python bench/gpu_sft.py --dry_run               # print the plan and FLOP counts, train nothing

Part 1 trains ``--warmup`` untimed steps then ``--steps`` timed steps (bf16 weights,
AdamW, SDPA or flash attention when importable) and prints tokens/s, peak memory and
MFU: (6 x N x tokens + attention FLOPs) per second over the card's peak dense bf16
FLOP/s (H100 / H200 SXM: 989 TFLOP/s). Part 2 starts itself again under
``accelerate launch --config_file accelerate_configs/fsdp.yaml --num_processes 1`` for
one training step and prints how many modules FSDP wrapped.

Prints ``BENCH_RESULT {json}`` lines (tokens/s, MFU, peak memory, wrapped modules).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FSDP_CONFIG = ROOT / "accelerate_configs" / "fsdp.yaml"

# ~1.1B parameters, Llama architecture (the shape of TinyLlama-1.1B).
ONE_B_CONFIG = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=4096,
)
# A few million parameters: the same code path on a CPU in seconds.
TINY_CONFIG = dict(
    hidden_size=128,
    intermediate_size=344,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=4000,
    max_position_embeddings=4096,
)
# Dense bf16 peak FLOP/s by card name (SXM parts; the PCIe H100 is lower, ~756 TFLOP/s).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model instead of ~1B (for CPU smoke runs)"
    )
    parser.add_argument("--seq_length", type=int, default=4096, help="tokens per packed batch")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernels, allocator)")
    parser.add_argument(
        "--mean_doc_length", type=int, default=600, help="mean document length in a packed row"
    )
    parser.add_argument(
        "--peak_tflops", type=float, default=None, help="override the card's peak bf16 TFLOP/s"
    )
    parser.add_argument("--skip_fsdp", action="store_true", help="skip part 2 (the FSDP wrap check)")
    parser.add_argument(
        "--dry_run", action="store_true", help="print the plan and FLOP counts, train nothing"
    )
    parser.add_argument(
        "--fsdp_step", action="store_true", help=argparse.SUPPRESS
    )  # part 2, under accelerate
    return parser.parse_args(argv)


def model_config(args: argparse.Namespace):
    from transformers import LlamaConfig

    shape = TINY_CONFIG if args.tiny else ONE_B_CONFIG
    return LlamaConfig(
        **{**shape, "max_position_embeddings": max(shape["max_position_embeddings"], args.seq_length)}
    )


def attention_implementation(device: str) -> str:
    if device.startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def packed_batch(config, seq_length: int, mean_doc_length: int, generator) -> tuple[dict, list[int]]:
    """One row of ``seq_length`` random tokens cut into documents; labels skip each document's first token."""
    import torch

    lengths = []
    while sum(lengths) < seq_length:
        length = int(torch.randint(mean_doc_length // 4, 2 * mean_doc_length, (1,), generator=generator))
        lengths.append(min(length, seq_length - sum(lengths)))
    input_ids = torch.randint(3, config.vocab_size, (1, seq_length), generator=generator)
    position_ids = torch.cat([torch.arange(length) for length in lengths])[None]
    labels = input_ids.clone()
    labels[position_ids == 0] = -100
    return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels}, lengths


def flops_per_step(n_params: int, config, lengths: list[int]) -> float:
    """Training FLOPs of one packed row: 6 N per token for the weights, plus causal attention.

    Attention per layer and document of length l: QK^T and AV take 2 x 2 x l^2 x d FLOPs
    in the forward pass, halved by the causal mask; backward costs twice the forward:
    3 x 2 x l^2 x d = 6 l^2 d per layer.
    """
    tokens = sum(lengths)
    attention = 6 * config.hidden_size * config.num_hidden_layers * sum(length**2 for length in lengths)
    return 6 * n_params * tokens + attention


def matmul_params(model) -> int:
    """Parameters that take part in matrix multiplies (the input embedding is a lookup)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    tied = embedding is model.get_output_embeddings().weight
    return total if tied else total - embedding.numel()


def peak_flops(args: argparse.Namespace) -> tuple[float | None, str]:
    import torch

    if args.peak_tflops:
        return args.peak_tflops * 1e12, "given"
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        return None, "cpu"
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value, name
    return None, name


def throughput(args: argparse.Namespace) -> list[dict]:
    """Part 1: timed training steps on packed rows; returns the BENCH_RESULT figures."""
    import torch
    from transformers import LlamaForCausalLM

    config = model_config(args)
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    attention = attention_implementation(args.device)
    with torch.device("meta"):  # shapes only: count parameters without allocating them
        n_params = matmul_params(LlamaForCausalLM._from_config(config))
    generator = torch.Generator().manual_seed(0)
    batches = [packed_batch(config, args.seq_length, args.mean_doc_length, generator) for _ in range(4)]
    step_flops = [flops_per_step(n_params, config, lengths) for _, lengths in batches]
    peak, card = peak_flops(args)
    print(
        f"model: {n_params / 1e6:,.0f}M matmul parameters, {config.num_hidden_layers} layers, "
        f"{attention} attention, {dtype}; device: {card}; "
        f"{args.seq_length} tokens per step in ~{args.seq_length // args.mean_doc_length} documents",
        flush=True,
    )
    if args.dry_run:
        print(f"dry run: {sum(step_flops) / len(step_flops) / 1e12:.1f} TFLOP per step; nothing trained")
        return []

    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, attn_implementation=attention, dtype=dtype)
    model.to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)

    def step(batch: dict) -> float:
        inputs = {key: value.to(args.device, non_blocking=True) for key, value in batch.items()}
        # use_cache=False: with a KV cache, transformers does not derive the per-document mask.
        loss = model(**inputs, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    for index in range(args.warmup):
        step(batches[index % len(batches)][0])
    synchronize()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for index in range(args.steps):
        loss = step(batches[index % len(batches)][0])
    synchronize()
    seconds = time.perf_counter() - start
    total_flops = sum(step_flops[index % len(batches)] for index in range(args.steps))
    tokens_per_second = args.steps * args.seq_length / seconds
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    mfu = total_flops / seconds / peak if peak else None
    print(
        f"{args.steps} steps in {seconds:.2f} s: {tokens_per_second:,.0f} tokens/s, "
        f"{total_flops / seconds / 1e12:.1f} TFLOP/s achieved"
        + (f", MFU {100 * mfu:.1f}% of {peak / 1e12:.0f} TFLOP/s" if mfu else "")
        + (f", peak memory {peak_memory:.1f} GiB" if peak_memory is not None else "")
        + f", last loss {float(loss):.3f}",
        flush=True,
    )
    size = "tiny" if args.tiny else "~1B"
    results = [
        {
            "name": f"training tokens/s, {size} Llama, packed {args.seq_length}",
            "value": round(tokens_per_second),
        }
    ]
    if mfu is not None:
        results.append({"name": "MFU (bf16 peak)", "value": round(mfu, 4)})
    if peak_memory is not None:
        results.append({"name": "peak GPU memory (GiB)", "value": round(peak_memory, 2)})
    return results


def fsdp_step(args: argparse.Namespace) -> None:
    """Part 2, run under ``accelerate launch``: one step of the model wrapped by FSDP."""
    import torch
    from accelerate import Accelerator
    from transformers import LlamaForCausalLM

    accelerator = Accelerator()
    config = model_config(args)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    wrapped = count_fsdp_modules(model)
    batch, _ = packed_batch(config, args.seq_length, args.mean_doc_length, torch.Generator().manual_seed(0))
    loss = model(**{k: v.to(accelerator.device) for k, v in batch.items()}, use_cache=False).loss
    accelerator.backward(loss)
    optimizer.step()
    print(
        f"FSDP: distributed type {accelerator.distributed_type}, {wrapped} modules wrapped "
        f"({config.num_hidden_layers} decoder layers + the root), one step, loss {loss.item():.3f}",
        flush=True,
    )
    print("FSDP_WRAPPED " + json.dumps({"wrapped": wrapped, "layers": config.num_hidden_layers}), flush=True)


def count_fsdp_modules(model) -> int:
    """Modules FSDP manages: FSDP2 marks them as FSDPModule, FSDP1 wraps them in FullyShardedDataParallel."""
    kinds = []
    try:
        from torch.distributed.fsdp import FSDPModule

        kinds.append(FSDPModule)
    except ImportError:
        pass
    from torch.distributed.fsdp import FullyShardedDataParallel

    kinds.append(FullyShardedDataParallel)
    return sum(isinstance(module, tuple(kinds)) for module in model.modules())


def run_fsdp_check(args: argparse.Namespace) -> list[dict]:
    """Start part 2 under accelerate with the project's FSDP config and one process."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "1",
        str(Path(__file__).resolve()), "--fsdp_step", "--seq_length", str(args.seq_length),
        *(["--tiny"] if args.tiny else []),
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    process = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    lines = (process.stdout + process.stderr).splitlines()
    print("\n".join(line for line in lines if line.startswith("FSDP")), flush=True)
    if process.returncode != 0:
        print("\n".join(lines[-30:]), file=sys.stderr)
        raise SystemExit(f"the FSDP step failed (exit {process.returncode})")
    found = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("FSDP_WRAPPED ")]
    return (
        [{"name": "FSDP wrapped modules (fsdp.yaml, 1 process)", "value": found[-1]["wrapped"]}]
        if found
        else []
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fsdp_step:
        fsdp_step(args)
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --tiny for a smoke run", file=sys.stderr)
        return 2
    results = throughput(args)
    if not args.skip_fsdp and not args.dry_run:
        results += run_fsdp_check(args)
    for result in results:
        print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
