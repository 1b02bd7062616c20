"""Clause cuts keep the sentence's rhythm and loudness (real joe voice, noise off).

A piece goes through the encoder with words of the sentence around it, and only
its own frames are decoded (``ChunkedDecoder.stream_piece``). Before, each piece
was an utterance of its own: the comma's pause at a cut was 279 ms against 464
ms mid-sentence, and the cut sentence 2.4% longer and 0.6 dB louder.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import FIXTURES, LONG_SENTENCE, NOISE_OFF

from bench.audio import active_db, pause_ms
from bench.texts import WORDS_25, WORDS_80
from wyoming_piper_stream.engine.chunked_decoder import (
    ChunkedDecoder,
    CutPause,
    _pause_as_predicted,
    measure_padding,
)
from wyoming_piper_stream.engine.clauses import (
    PieceWindow,
    SentencePiece,
    clause_pieces,
    piece_window,
    sentence_pieces,
    utterance_pieces,
)
from wyoming_piper_stream.engine.graphs import Latent, Voice, load_voice
from wyoming_piper_stream.engine.loudness import PcmStream
from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer, phonemes_to_ids
from wyoming_piper_stream.engine.settings import CONTEXT_PHONEMES
from wyoming_piper_stream.voices.files import voice_files_at

MAX_PHONEMES = 200  # the server's default


def _phonemes(text: str) -> list[str]:
    (sentence,) = EspeakPhonemizer("en-us").phonemize(text)
    return sentence


def _pieces(phonemes: list[str], max_phonemes: int) -> list[SentencePiece]:
    return sentence_pieces(phonemes, clause_pieces(phonemes, max_phonemes))


def _pcm(streamer: ChunkedDecoder, pieces: list[SentencePiece], gain: float, joined: bool = True):
    """PCM of the pieces as one job, and the sample where each piece ends.

    ``joined``: the pieces share a ``CutPause``, as the server's pieces of a sentence do."""
    stream = PcmStream(gain)
    audio, ends = [], []
    cut = CutPause() if joined else None
    for piece in pieces:
        for chunk in streamer.stream_piece(piece, NOISE_OFF, cut=cut):
            audio.append(chunk.audio)
        ends.append(sum(len(a) for a in audio))
    pcm = b"".join(stream.feed(a) for a in audio) + stream.end()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32767, ends


# --- windows (pure) ----------------------------------------------------------------------


def test_a_whole_sentence_is_exactly_piper_s_utterance(joe_voice: Voice) -> None:
    phonemes = _phonemes(LONG_SENTENCE)
    id_map = joe_voice.config.phoneme_id_map
    window = piece_window(SentencePiece(tuple(phonemes)), id_map)
    assert window.ids == phonemes_to_ids(phonemes, id_map)
    assert (window.first, window.end) == (0, len(window.ids))
    assert not window.has_context


def test_own_ids_of_the_pieces_tile_the_sentence(joe_voice: Voice) -> None:
    # With context longer than the sentence every window is the whole sentence,
    # and the pieces' own ids must cover it exactly once, in order.
    phonemes = _phonemes(LONG_SENTENCE)
    id_map = joe_voice.config.phoneme_id_map
    whole = phonemes_to_ids(phonemes, id_map)
    windows = [piece_window(p, id_map, 10_000) for p in _pieces(phonemes, 1)]
    assert len(windows) == 3
    assert all(w.ids == whole for w in windows)
    assert windows[0].first == 0 and windows[-1].end == len(whole)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.first
        assert whole[after.first] == id_map[" "][0]  # a seam sits in the comma's pause


@pytest.mark.parametrize("text", ["ab cd, ef gh, ij", "ab，cd，ef"])
def test_pieces_tile_the_sentence_with_or_without_a_space_at_the_cut(text: str) -> None:
    id_map = {s: [i] for i, s in enumerate("_^$ ,，abcdefghij")}
    phonemes = list(text)
    pieces = sentence_pieces(phonemes, clause_pieces(phonemes, 1))
    assert len(pieces) == 3
    whole = phonemes_to_ids(phonemes, id_map)
    windows = [piece_window(p, id_map, 10_000) for p in pieces]
    assert all(w.ids == whole for w in windows)
    assert [w.first for w in windows[1:]] == [w.end for w in windows[:-1]]
    assert windows[0].first == 0 and windows[-1].end == len(whole)


def test_unknown_continuation_gets_a_placeholder(joe_voice: Voice) -> None:
    id_map = joe_voice.config.phoneme_id_map
    piece = SentencePiece(tuple(_phonemes("Sure, ")), (), None)
    window = piece_window(piece, id_map)
    assert window.first == 0 and window.end < len(window.ids)  # context after, not decoded


def test_a_sentence_is_cut_only_where_that_saves_encoder_work() -> None:
    phonemizer = EspeakPhonemizer("en-us")
    # 25 words, 3 clauses: the first piece's window (128 phonemes after it) holds it all.
    (whole,) = utterance_pieces(phonemizer, WORDS_25, MAX_PHONEMES)
    assert whole == SentencePiece(tuple(_phonemes(WORDS_25)))
    # 233 phonemes: the first piece and the rest.
    first, rest = utterance_pieces(phonemizer, LONG_SENTENCE, MAX_PHONEMES)
    assert (*rest.before, *rest.phonemes) == tuple(_phonemes(LONG_SENTENCE))
    assert first.before == ()
    assert first.after in (rest.phonemes, (" ", *rest.phonemes))


def test_the_first_audio_waits_for_an_encoder_window_within_the_limit(joe_voice: Voice) -> None:
    # The first piece and the context after it: at most --max-utterance-phonemes.
    phonemizer = EspeakPhonemizer("en-us")
    id_map = joe_voice.config.phoneme_id_map
    for text in (LONG_SENTENCE, WORDS_80):
        first = next(utterance_pieces(phonemizer, text, MAX_PHONEMES))
        window = piece_window(first, id_map)
        assert len(first.phonemes) <= MAX_PHONEMES - CONTEXT_PHONEMES
        assert len(window.ids) <= 2 * MAX_PHONEMES + 3  # each phoneme and its PAD; BOS PAD EOS


def test_after_the_first_piece_the_rest_is_one_piece_up_to_a_limit() -> None:
    # Only the first piece's encoder run delays the first audio: the rest of the
    # sentence is one more piece (one cut), not a context window per clause.
    phonemizer = EspeakPhonemizer("en-us")
    phonemes = tuple(_phonemes(WORDS_80))
    first, rest = utterance_pieces(phonemizer, WORDS_80, MAX_PHONEMES)
    assert first.before == () and len(first.phonemes) <= MAX_PHONEMES
    assert rest.after == () and (*rest.before, *rest.phonemes) == phonemes
    # A run-on sentence: later pieces stay within 4 x the limit each.
    run_on = ", ".join([WORDS_80.rstrip(".")] * 4) + "."
    pieces = list(utterance_pieces(phonemizer, run_on, MAX_PHONEMES))
    assert len(pieces) > 2
    assert all(len(p.phonemes) <= 4 * MAX_PHONEMES for p in pieces)
    assert pieces[-1].after == () and (*pieces[-1].before, *pieces[-1].phonemes) == tuple(
        _phonemes(run_on)
    )


def test_the_pacing_may_keep_the_first_cut_out() -> None:
    # A device too slow for the short first window to gain anything: the first two
    # pieces are one (for the 80 words, the whole sentence); later cuts stay.
    phonemizer = EspeakPhonemizer("en-us")
    asked: list[tuple[SentencePiece, SentencePiece, SentencePiece]] = []

    def never(first: SentencePiece, second: SentencePiece, joined: SentencePiece) -> bool:
        asked.append((first, second, joined))
        return False

    (whole,) = utterance_pieces(phonemizer, WORDS_80, MAX_PHONEMES, cut_pays=never)
    assert whole == SentencePiece(tuple(_phonemes(WORDS_80)))
    cut = list(utterance_pieces(phonemizer, WORDS_80, MAX_PHONEMES))
    assert [p.phonemes for p in asked[0][:2]] == [p.phonemes for p in cut]
    run_on = ", ".join([WORDS_80.rstrip(".")] * 4) + "."
    pieces = list(utterance_pieces(phonemizer, run_on, MAX_PHONEMES, cut_pays=never))
    assert len(pieces) == len(list(utterance_pieces(phonemizer, run_on, MAX_PHONEMES))) - 1
    assert all(len(p.phonemes) <= 5 * MAX_PHONEMES for p in pieces)


# --- the real voice ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_and_uncut(joe_voice: Voice, joe_padding: int, joe_gain: float):
    streamer = ChunkedDecoder(joe_voice, joe_padding)
    phonemes = _phonemes(LONG_SENTENCE)
    pieces = _pieces(phonemes, MAX_PHONEMES)
    assert len(pieces) == 2
    cut, ends = _pcm(streamer, pieces, joe_gain)
    uncut, _ = _pcm(streamer, [SentencePiece(tuple(phonemes))], joe_gain)
    # Where the cut comma's own ids end in the whole sentence.
    latent = joe_voice.encode(phonemes_to_ids(phonemes, joe_voice.config.phoneme_id_map), NOISE_OFF)
    assert latent.durations is not None
    comma = 2 + 2 * len(clause_pieces(phonemes, MAX_PHONEMES)[0])
    comma_end = int(np.sum(latent.durations[:comma])) * joe_voice.config.hop_length
    return cut, uncut, ends[0], comma_end


def test_cut_sentence_is_as_long_as_uncut(cut_and_uncut) -> None:
    cut, uncut, _, _ = cut_and_uncut
    assert abs(len(cut) / len(uncut) - 1) <= 0.01


def test_pause_at_a_cut_is_the_mid_sentence_one(cut_and_uncut) -> None:
    cut, uncut, seam, comma_end = cut_and_uncut
    at_cut, in_sentence = pause_ms(cut, seam), pause_ms(uncut, comma_end)
    # The piece alone gave 279 ms against 464 ms.
    assert abs(at_cut - in_sentence) <= 20, (at_cut, in_sentence)


def test_cut_sentence_is_as_loud_as_uncut(cut_and_uncut) -> None:
    cut, uncut, _, _ = cut_and_uncut
    assert abs(active_db(cut) - active_db(uncut)) <= 0.5


def test_a_piece_without_context_is_the_plain_utterance(joe_voice: Voice, joe_padding: int) -> None:
    streamer = ChunkedDecoder(joe_voice, joe_padding)
    phonemes = _phonemes("Turn on the kitchen lights.")
    ids = phonemes_to_ids(phonemes, joe_voice.config.phoneme_id_map)
    piece = [c.audio for c in streamer.stream_piece(SentencePiece(tuple(phonemes)), NOISE_OFF)]
    plain = [c.audio for c in streamer.stream(ids, NOISE_OFF)]
    assert np.array_equal(np.concatenate(piece), np.concatenate(plain))


def test_an_early_clause_of_streamed_text_gets_the_sentence_s_pause(
    joe_voice: Voice, joe_padding: int, joe_gain: float, cut_and_uncut
) -> None:
    # LLM text: the first clause is spoken before the rest has arrived (after=None,
    # a placeholder stands in); the next clause then knows what came before.
    _, uncut, _, comma_end = cut_and_uncut
    streamer = ChunkedDecoder(joe_voice, joe_padding)
    first, rest = _pieces(_phonemes(LONG_SENTENCE), MAX_PHONEMES)
    early = SentencePiece(first.phonemes, first.before, None)
    cut, ends = _pcm(streamer, [early, rest], joe_gain)
    in_sentence = pause_ms(uncut, comma_end)
    # Alone the clause ended with 279 ms here, against 464 ms mid-sentence.
    # The next piece sees the comma with the real text after it and gives the
    # pause what it predicts there (``CutPause``).
    assert abs(pause_ms(cut, ends[0]) - in_sentence) <= 20, (pause_ms(cut, ends[0]), in_sentence)
    # The clause's words were spoken before the rest was known: a little slower.
    assert abs(len(cut) / len(uncut) - 1) <= 0.02
    # Without that correction the placeholder's pause stays.
    unjoined, ends = _pcm(streamer, [early, rest], joe_gain, joined=False)
    assert abs(pause_ms(unjoined, ends[0]) - in_sentence) > 20


def test_a_voice_without_durations_speaks_pieces_alone() -> None:
    # Piper's own pre-split export has no duration output: no frame to cut at.
    path = FIXTURES / "tiny-multi-presplit"
    if not path.exists():
        pytest.skip("fixture voices not built")
    voice = load_voice(voice_files_at(path))
    assert not voice.has_durations
    streamer = ChunkedDecoder(voice, measure_padding(voice))
    phonemes = tuple("ab cd, ef gh")
    piece = SentencePiece(phonemes[:6], (), phonemes[7:])
    alone = phonemes_to_ids(piece.phonemes, voice.config.phoneme_id_map)
    spoken = np.concatenate([c.audio for c in streamer.stream_piece(piece, NOISE_OFF, 0)])
    expected = np.concatenate([c.audio for c in streamer.stream(alone, NOISE_OFF, 0)])
    assert np.array_equal(spoken, expected)


def test_our_split_exposes_durations(joe_voice: Voice) -> None:
    assert joe_voice.has_durations
    ids = phonemes_to_ids(_phonemes(LONG_SENTENCE), joe_voice.config.phoneme_id_map)
    latent = joe_voice.encode(ids, NOISE_OFF)
    assert latent.durations is not None and len(latent.durations) == len(ids)
    assert int(latent.durations.sum()) == latent.num_frames


# --- the pause at a cut (pure) -----------------------------------------------------------


def _labelled(durations: list[int]):
    """A latent whose every frame holds the index of the id it belongs to."""
    labels = np.repeat(np.arange(len(durations)), durations).astype(np.float32)
    z = labels.reshape(1, 1, -1)
    return Latent(z, np.ones_like(z), None, np.array(durations)), labels


# ids: BOS PAD | a PAD , PAD | (space) PAD b PAD , PAD | (context) PAD EOS
# The piece owns ids 6..12: its joining space, "b" and its own comma (break after).
_WINDOW = PieceWindow(list(range(15)), first=6, end=12, break_before=2, break_after=2, joint=2)
_DURATIONS = [1, 1, 3, 1, 4, 2, 3, 1, 5, 1, 2, 2, 3, 1, 1]


@pytest.mark.parametrize(
    ("played", "expected_change"),
    [(6, 0), (4, 2), (9, -3), (20, -4)],  # the break here is 4 + 2 frames; the space 3 + 1
)
def test_the_next_piece_moves_its_leading_silence_to_its_own_pause(
    played: int, expected_change: int
) -> None:
    latent, labels = _labelled(_DURATIONS)
    keep = _WINDOW.frames(latent.durations)
    cut = CutPause(played)
    moved, (start, stop) = _pause_as_predicted(latent, _WINDOW, keep, cut)
    assert (start, stop) == (keep[0], keep[1] + expected_change)
    frames = moved.z.reshape(-1)
    assert np.array_equal(frames[:start], labels[: keep[0]])  # context before: untouched
    assert np.array_equal(frames[stop:], labels[keep[1] :])  # context after: untouched
    own = frames[start:stop]
    if expected_change >= 0:  # more of the break's last id (its PAD), before the piece
        assert np.array_equal(own[:expected_change], np.full(expected_change, 5))
        assert np.array_equal(own[expected_change:], labels[keep[0] : keep[1]])
    else:  # less of the joining space, never of the words
        assert np.array_equal(own, labels[keep[0] - expected_change : keep[1]])
    assert cut.played == 2 + 2  # the piece's own comma and PAD, for the next piece


def test_the_first_piece_of_a_sentence_only_records_its_break() -> None:
    latent, _ = _labelled(_DURATIONS)
    first = PieceWindow(list(range(15)), first=0, end=12, break_after=2)
    cut = CutPause()
    moved, keep = _pause_as_predicted(latent, first, first.frames(latent.durations), cut)
    assert moved is latent and keep == (0, sum(_DURATIONS[:12]))
    assert cut.played == 4
