# edgekd in a container, installed exactly as the README does it (`make setup`), with `edgekd` as entrypoint.
#   docker build -t edgekd .
#   docker run --rm -v "$PWD/runs:/app/runs" edgekd run pipelines/quickstart.yaml --device x86-cpu --out runs/q
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends make g++ ninja-build git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml Makefile README.md ./
COPY edgekd ./edgekd
COPY devices ./devices
COPY pipelines ./pipelines

# The CPU build of torch: from PyTorch's CPU index in a container (a plain `torch` from PyPI is a multi-GB CUDA build).
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
RUN make setup TORCH_PIP_ARGS="$TORCH_PIP_ARGS" && rm -rf /root/.cache/pip

ENV PATH="/app/.venv/bin:$PATH"
ENTRYPOINT ["edgekd"]
CMD ["--help"]
