"""Shared by the GPU comparison scripts: CUDA-event timing and the copy-bandwidth yardstick,
with the same accounting as `stk bench ... --device cuda` (bytes read + bytes written)."""
import torch

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def time_ms(fn, warmup, iters):
    """Mean milliseconds of fn() over `iters` back-to-back runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def copy_bytes_per_s(nbytes, warmup, iters):
    """Device-to-device copy bandwidth over an nbytes buffer, read + written bytes per second."""
    nbytes = max(nbytes, 1 << 26)
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), warmup, iters)
    return 2 * nbytes / (ms * 1e-3)


def line(label, ms, nbytes, copy):
    bw = nbytes / (ms * 1e-3)
    return f"{label}: {ms:.4f} ms, {bw / 1e9:.1f} GB/s = {100 * bw / copy:.1f}% of device copy ({copy / 1e9:.1f} GB/s)"


def header():
    import sys
    p = torch.cuda.get_device_properties(0)
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {p.name}, python {sys.version.split()[0]}"
