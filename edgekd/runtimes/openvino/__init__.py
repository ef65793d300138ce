"""OpenVINO: IR artifacts (fp32, bf16 compute, fp16 weights) and NNCF INT8 IRs, compiled with explicit settings."""
