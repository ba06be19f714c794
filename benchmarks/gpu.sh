#!/usr/bin/env bash
# The GPU check, for a session that is lent a machine with an NVIDIA GPU.
#
# Run it there from the repository root in one call (about 6 minutes):
#   bash benchmarks/gpu.sh
# It registers the NVIDIA OpenCL driver, lists the OpenCL devices, runs the
# OpenCL half of the oracle grid on the GPU, then the product benchmark's
# OpenCL rows beside PyTorch on the GPU (cuDNN; NumPy in/out and resident)
# and on the CPU, and writes gpu.json and the logs to $OUT (or /tmp/clconv-gpu).
# Copy gpu.json to benchmarks/results/ and its table to benchmarks/README.md.
#
# That machine has numpy, torch, pytest and hypothesis but no pyopencl and
# no network: carry the wheels in .whl (ignored by git), made here with
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pyopencl platformdirs pytools siphash24
# and name .whl in the call's carry.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/clconv-gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi

# The driver's OpenCL library, registered in a folder of our own (clconv uses
# OCL_ICD_VENDORS as it is when it is set).
lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}')
if [ -z "$lib" ]; then
    lib=$(find /usr/local/nvidia /usr/lib /usr/lib64 -name 'libnvidia-opencl.so.1' 2>/dev/null | head -1)
fi
if [ -z "$lib" ]; then
    echo "no libnvidia-opencl.so.1 on this machine: the NVIDIA OpenCL driver is missing" | tee "$out/gpu.log"
    exit 1
fi
mkdir -p /tmp/icd
echo "$lib" > /tmp/icd/nvidia.icd
export OCL_ICD_VENDORS=/tmp/icd

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    python3 -m clconv devices 2>&1
} | tee "$out/gpu.log"

# The oracle grid's OpenCL half on the device "opencl" picks (the GPU first).
CLCONV_TEST_DEVICES=default timeout 150 python3 -m pytest -q -x -p no:cacheprovider \
    -k opencl tests/test_conv_oracle.py 2>&1 | tail -15 | tee -a "$out/gpu.log"

timeout 240 python3 -m clconv bench --backend opencl --peers torch --repeat 7 \
    --json "$out/gpu.json" 2>&1 | tee "$out/bench.txt"
echo "wrote $out/gpu.json"
