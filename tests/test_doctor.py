"""`kit doctor`: the embedded model's llama.cpp build measured against the torch model of the same GGUF.

The real check runs once on this machine's build (it is what `make setup` runs last). The verdict is
then tried on the figures of builds known to be wrong, so a broken engine cannot pass unnoticed.
"""

from __future__ import annotations

import pytest

from kit import doctor
from kit.commands import doctor as doctor_command
from kit.llm.local_server import exit_text


def report(agreement: float, nll_engine: float, nll_torch: float = 3.30) -> doctor.EngineReport:
    return doctor.EngineReport(agreement, 171, nll_engine, nll_torch, 60.0, "AVX2 = 1 | AVX512 = 0 |", 20.0)


@pytest.mark.embedded
def test_this_build_computes_what_torch_computes(capsys):
    assert doctor_command.main([]) == 0
    out = capsys.readouterr().out
    assert "kit doctor: ok: llama.cpp vs torch" in out and "tokens/s" in out and "llama_cpp_python" in out


@pytest.mark.parametrize("agreement,nll,broken", [
    (0.215, 6.36, True),   # the native build of 0.3.16 on an AVX-512/AMX Xeon (issue 26)
    (0.969, 3.31, False),  # the portable build on the same machine
    (0.95, 3.80, True),    # right top-1, but the probabilities are off
    (0.80, 3.31, True),
])
def test_verdict_on_known_builds(agreement, nll, broken):
    assert bool(report(agreement, nll).problems()) is broken


def test_a_wrong_build_fails_setup_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(doctor_command, "check_engine", lambda gguf=None: report(0.215, 6.36))
    assert doctor_command.main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "top-1 agreement 21.5% < 90%" in err[0] and "gap +3.06" in err[0] and "make setup" in err[0]


def test_a_crashing_engine_is_a_finding(monkeypatch, capsys):
    def crash(gguf=None):
        raise doctor.EngineError(f"the llama.cpp engine {exit_text(-11)}; its output ends: (nothing)")

    monkeypatch.setattr(doctor_command, "check_engine", crash)
    assert doctor_command.main([]) == 1
    assert "exited (signal 11: segmentation fault)" in capsys.readouterr().err
