"""A loaded voice speaking a job: text -> phonemes -> ids -> chunked audio -> PCM."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from functools import partial

import numpy as np

from wyoming_piper_stream.engine.chunked_decoder import CutPause
from wyoming_piper_stream.engine.clauses import SentencePiece, piece_ids, utterance_pieces
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
    """Blocking: PCM bytes per decoded chunk (or per group of held-back chunks).

    ``clock`` is the listener's playback so far and what is left to speak (the
    jobs of one text stream share it): the pacing plans the whole job with it.
    Chunks the pacing holds back (a device slower than real time for this reply)
    go out together with the first one it releases, or at the end of the job.
    ``gate`` waits for the job's turn before each synthesis step (``scheduler``).
    ``clauses``: the job is one sentence spoken while it arrives, part by part
    (clause streaming), instead of ``job.sentences``.
    """
    scales = ready.voice.scales(settings.noise_scale, settings.length_scale, settings.noise_w_scale)
    costs = ready.streamer.costs
    silence_seconds = settings.sentence_silence
    silence_samples = int(silence_seconds * ready.voice.config.sample_rate)
    # One limiter per job: it holds back a few ms of look-ahead until the end.
    pcm = PcmStream(ready.gain, ready.voice.config.sample_rate)
    held: list[bytes] = []
    sentences = _sentence_parts(job, clauses, stop)
    for index, parts in enumerate(sentences):
        pieces: Iterable[SentencePiece] = _pieces(
            ready, parts, settings.max_utterance_phonemes, clock
        )
        if clauses is None:  # a whole sentence: its pieces are known now, for the plan
            pieces = list(pieces)
            ids = [piece_ids(piece) for piece in pieces]
            clock.phonemized(ids, [ready.streamer.encoder_ids(piece) for piece in pieces])
            costs.learn_text(len(job.sentences[index]), sum(ids))
        cut = CutPause()
        for piece in pieces:
            clock.restart_if_dry()  # text kept the player waiting: end the silence soon
            clock.utterance_started()
            for chunk in ready.streamer.stream_piece(piece, scales, speaker_id, clock, gate, cut):
                if stop.is_set():
                    return
                held.append(pcm.feed(chunk.audio))
                if not chunk.held:
                    yield b"".join(held)
                    held.clear()
        is_last = index == len(sentences) - 1
        if silence_samples and (not is_last or job.trailing_silence):
            audio = pcm.feed(np.zeros(silence_samples, dtype=np.float32))
            if held:
                clock.hold(silence_seconds)
                held.append(audio)
            else:
                clock.sent(silence_seconds)
                yield audio
    if held:  # the job ended while its start was held back
        clock.sent(0.0)
    yield b"".join([*held, pcm.end()])
    costs.learn_plan(clock)  # a start that came too early makes the next one safer
    ready.store_costs()


def _sentence_parts(
    job: SpeechJob, clauses: ClauseFeed | None, stop: threading.Event
) -> list[Iterable[tuple[str, bool]]]:
    """Per sentence, its parts as (text, the sentence continues after it)."""
    if clauses is not None:
        return [clauses.parts(stop)]
    return [[(sentence, False)] for sentence in job.sentences]


def _pieces(
    ready: ReadyVoice,
    parts: Iterable[tuple[str, bool]],
    max_phonemes: int,
    clock: PlaybackClock,
) -> Iterator[SentencePiece]:
    """The pieces of one sentence: a whole sentence is one part; clause streaming hands
    its parts over as they arrive, and each is spoken with the sentence so far before it
    (the same path, and the same context, as the clause pieces of a long sentence).
    Whether a long sentence is cut at all is the pacing's choice (``cut_pays``)."""
    spoken: tuple[str, ...] = ()
    joint = (" ",) if ready.voice.config.phoneme_type == "espeak" else ()
    context = ready.streamer.context
    for text, continues in parts:
        last = None
        pieces = utterance_pieces(
            ready.phonemizer,
            text,
            max_phonemes,
            context,
            before=spoken,
            continues=continues,
            cut_pays=partial(ready.streamer.cut_pays, clock=clock),
        )
        for last in pieces:
            yield last
        if last is not None:
            spoken = (*last.before, *last.phonemes, *joint)
