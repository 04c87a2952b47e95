"""Compile one CUDA C file to PTX with NVRTC (called by `cargo xtask ptx`).

usage: python nvrtc_compile.py LIBNVRTC SOURCE OUTPUT [NVRTC OPTIONS...]

The CUDA 12.2 wheels on PyPI ship NVRTC and ptxas but no nvcc driver, and NVRTC 12.2 emits
PTX ISA 8.2, which drivers of CUDA 12.2 (R535) and newer load. ctypes keeps this free of
any package beyond the wheels.
"""
import ctypes
import os
import sys


def main():
    lib_path, src_path, out_path, *options = sys.argv[1:]
    nvrtc = ctypes.CDLL(lib_path)
    with open(src_path, "rb") as f:
        source = f.read()
    program = ctypes.c_void_p()
    name = os.path.basename(src_path).encode()
    check(nvrtc, nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, name, 0, None, None))
    args = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    status = nvrtc.nvrtcCompileProgram(program, len(options), args)
    size = ctypes.c_size_t()
    check(nvrtc, nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size)))
    log = ctypes.create_string_buffer(size.value)
    check(nvrtc, nvrtc.nvrtcGetProgramLog(program, log))
    if status != 0:
        sys.stderr.write(log.value.decode(errors="replace"))
        sys.exit(1)
    check(nvrtc, nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size)))
    ptx = ctypes.create_string_buffer(size.value)
    check(nvrtc, nvrtc.nvrtcGetPTX(program, ptx))
    with open(out_path, "wb") as f:
        f.write(ptx.value)


def check(nvrtc, status):
    if status != 0:
        nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
        sys.exit("nvrtc: " + nvrtc.nvrtcGetErrorString(status).decode())


if __name__ == "__main__":
    main()
