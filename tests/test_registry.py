"""The backend registry: every name listed, unavailable ones explained, never a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gdbench import implementations
from gdbench.data.errors import InputError
from gdbench.implementations import BackendUnavailable

EXPECTED = ["numpy", "torch-cpu", "torch-cuda", "torch-manual", "torch-tutorial",
            "torch-compile", "torch-compile-cuda", "torch-cuda-graph", "torch-ddp",
            "torch-ddp-cuda", "jax", "jax-scan", "jax-sharded"]
USES = {"torch": ["torch-cpu", "torch-cuda", "torch-manual", "torch-tutorial", "torch-compile",
                  "torch-compile-cuda", "torch-cuda-graph", "torch-ddp", "torch-ddp-cuda"],
        "jax": ["jax", "jax-scan", "jax-sharded"]}


def test_names_lists_every_backend() -> None:
    assert implementations.names() == EXPECTED
    assert implementations.REFERENCE == "numpy"


def test_available_lists_every_name_with_none_or_a_reason() -> None:
    status = implementations.available()
    assert list(status) == EXPECTED
    assert status["numpy"] is None  # the reference needs nothing beyond NumPy
    for name, why in status.items():
        assert why is None or (isinstance(why, str) and why.strip()), name


@pytest.mark.parametrize("name", ["torch-cuda", "torch-compile-cuda", "torch-cuda-graph",
                                  "torch-ddp-cuda"])
def test_torch_cuda_backends_say_no_cuda_device_without_a_gpu(name: str) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert implementations.available()[name] == "no CUDA device"
    with pytest.raises(BackendUnavailable, match=f"backend {name}: no CUDA device"):
        implementations.get(name)


@pytest.mark.parametrize("name", EXPECTED)
def test_get_gives_a_backend_with_the_three_phases(
    name: str, backend_status: dict[str, str | None]
) -> None:
    if backend_status[name]:
        pytest.skip(f"backend {name}: {backend_status[name]}")
    backend = implementations.get(name)
    assert backend.name == name
    assert backend.device in ("cpu", "cuda")
    for phase in ("prepare", "run", "result"):
        assert callable(getattr(backend, phase))
    assert implementations.get(name) is not backend  # a fresh instance each time


def test_unknown_backend_raises_input_error_listing_the_known_ones() -> None:
    with pytest.raises(InputError) as info:
        implementations.get("nope")
    assert not isinstance(info.value, BackendUnavailable)
    message = str(info.value)
    assert "unknown backend 'nope'" in message
    for name in EXPECTED:
        assert name in message


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_missing_library_makes_its_backends_unavailable_with_an_install_hint(
    library: str,
    hide_library: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    backend_status: dict[str, str | None],
) -> None:
    hide_library(library)
    status = implementations.available()
    assert list(status) == EXPECTED
    for name in USES[library]:
        extra = "cuda" if "cuda" in name else library  # the GPU build's extra
        assert status[name] == (
            f"{library} is not installed; install it with pip install 'gdbench[{extra}]'"
        ), name
        with pytest.raises(BackendUnavailable, match=rf"pip install 'gdbench\[{extra}\]'"):
            implementations.get(name)
    others = [n for n in EXPECTED if n not in USES[library]]
    assert {n: status[n] for n in others} == {n: backend_status[n] for n in others}

    monkeypatch.undo()  # the real library is back: so are its backends
    assert implementations.available() == backend_status


def test_the_data_parallel_backends_run_only_when_named() -> None:
    default = implementations.default_names()
    assert default == [n for n in implementations.names()
                       if n not in ("torch-ddp", "torch-ddp-cuda", "jax-sharded")]
    assert default[0] == "numpy"  # registry order kept
