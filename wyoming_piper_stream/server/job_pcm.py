"""A loaded voice speaking a job: text -> phonemes -> ids -> chunked audio -> PCM."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np

from wyoming_piper_stream.engine.clauses import SentencePiece, utterance_pieces
from wyoming_piper_stream.engine.gate import Gate, ungated
from wyoming_piper_stream.engine.loudness import PcmStream
from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.server.jobs import ClauseFeed, SpeechJob
from wyoming_piper_stream.server.settings import SynthesisSettings
from wyoming_piper_stream.voices.builder import ReadyVoice


def pcm_for_job(
    ready: ReadyVoice,
    job: SpeechJob,
    settings: SynthesisSettings,
    speaker_id: int | None,
    stop: threading.Event,
    clock: PlaybackClock,
    gate: Gate = ungated,
    clauses: ClauseFeed | None = None,
) -> Iterator[bytes]:
    """Blocking: PCM bytes per decoded chunk, sentence after sentence.

    ``clock`` is the listener's playback so far (the jobs of one text stream share
    it): once audio plays, later utterances size their chunks by what is already
    buffered instead of starting small again. ``gate`` waits for the job's turn
    before each synthesis step (``scheduler``). ``clauses``: the job is one sentence
    spoken while it arrives, part by part (clause streaming), instead of ``job.sentences``.
    """
    scales = ready.voice.scales(settings.noise_scale, settings.length_scale, settings.noise_w_scale)
    silence_seconds = settings.sentence_silence
    silence_samples = int(silence_seconds * ready.voice.config.sample_rate)
    # One limiter per job: it holds back a few ms of look-ahead until the end.
    pcm = PcmStream(ready.gain, ready.voice.config.sample_rate)
    sentences = _sentence_parts(job, clauses, stop)
    for index, parts in enumerate(sentences):
        for piece in _pieces(ready, parts, settings.max_utterance_phonemes):
            clock.restart_if_dry()  # text kept the player waiting: end the silence soon
            for chunk in ready.streamer.stream_piece(piece, scales, speaker_id, clock, gate):
                if stop.is_set():
                    return
                yield pcm.feed(chunk.audio)
        is_last = index == len(sentences) - 1
        if silence_samples and (not is_last or job.trailing_silence):
            clock.sent(silence_seconds)
            yield pcm.feed(np.zeros(silence_samples, dtype=np.float32))
    yield pcm.end()


def _sentence_parts(
    job: SpeechJob, clauses: ClauseFeed | None, stop: threading.Event
) -> list[Iterable[tuple[str, bool]]]:
    """Per sentence, its parts as (text, the sentence continues after it)."""
    if clauses is not None:
        return [clauses.parts(stop)]
    return [[(sentence, False)] for sentence in job.sentences]


def _pieces(
    ready: ReadyVoice, parts: Iterable[tuple[str, bool]], max_phonemes: int
) -> Iterator[SentencePiece]:
    """The pieces of one sentence: a whole sentence is one part; clause streaming hands
    its parts over as they arrive, and each is spoken with the sentence so far before it
    (the same path, and the same context, as the clause pieces of a long sentence)."""
    spoken: tuple[str, ...] = ()
    joint = (" ",) if ready.voice.config.phoneme_type == "espeak" else ()
    context = ready.streamer.context
    for text, continues in parts:
        last = None
        pieces = utterance_pieces(
            ready.phonemizer, text, max_phonemes, context, before=spoken, continues=continues
        )
        for last in pieces:
            yield last
        if last is not None:
            spoken = (*last.before, *last.phonemes, *joint)
