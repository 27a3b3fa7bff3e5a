"""llama.cpp's source for the GPU engine benchmark, as llama-cpp-python's sdist vendors it:
downloaded once from pip's package index (the one pip is configured with), checked against a
pinned sha256, and trimmed to what `llama-bench` builds from (CMake files, ggml, src, include,
common, tools, vendor, licenses) plus llama.cpp's Qwen2 vocabulary
(`models/ggml-vocab-qwen2.gguf`), as one tar.xz whose paths start at llama.cpp's root.

`python3 llama_cpp_source.py CACHE_DIR OUT.tar.xz`. `pip download` cannot fetch this sdist
without building it (its metadata step runs CMake), so the index is read directly, the way
pip reads it."""

import hashlib
import io
import os
import re
import sys
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
ROOT = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
KEEP = ("CMakeLists.txt", "LICENSE", "cmake/", "ggml/", "src/", "include/", "common/",
        "tools/", "app/", "vendor/", "licenses/", "models/ggml-vocab-qwen2.gguf")


def index_url():
    configured = os.environ.get("PIP_INDEX_URL")
    if configured:
        return configured
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def download(cache):
    path = cache / SDIST
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == SHA256:
        return path
    page_url = index_url().rstrip("/") + f"/{PACKAGE}/"
    page = urllib.request.urlopen(page_url, timeout=120).read().decode()
    links = [link for link in re.findall(r'href="([^"]+)"', page)
             if link.split("#")[0].endswith(SDIST)]
    if not links:
        sys.exit(f"{page_url} lists no {SDIST}")
    url = urllib.parse.urljoin(page_url, links[0].split("#")[0])
    print(f"llama_cpp_source: downloading {SDIST}", file=sys.stderr, flush=True)
    data = urllib.request.urlopen(url, timeout=600).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"{SDIST}: sha256 {digest}, expected {SHA256}")
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def trim(sdist, out):
    with tarfile.open(sdist) as source, tarfile.open(out, "w:xz") as trimmed:
        for member in source:
            if not member.name.startswith(ROOT):
                continue
            relative = member.name[len(ROOT):]
            if not relative.startswith(KEEP) or not (member.isfile() or member.isdir()):
                continue
            member.name = relative
            data = source.extractfile(member) if member.isfile() else None
            trimmed.addfile(member, io.BytesIO(data.read()) if data else None)


def main():
    cache, out = Path(sys.argv[1]), Path(sys.argv[2])
    trim(download(cache), out)
    print(f"llama_cpp_source: {out} ({out.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
