"""A loaded voice speaking a job: text -> phonemes -> ids -> chunked audio -> PCM."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence

from .clauses import clause_pieces
from .loader import ReadyVoice
from .loudness import to_pcm16
from .phonemize import Phonemizer, phonemes_to_ids, safe_phonemize
from .scheduler import Gate, ungated
from .settings import SynthesisSettings
from .synthesis import SpeechJob


def utterance_ids(
    phonemizer: Phonemizer,
    sentence: str,
    id_map: Mapping[str, Sequence[int]],
    max_phonemes: int,
) -> Iterator[list[int]]:
    """Phoneme ids of each utterance the encoder gets for one sentence."""
    for phonemes in safe_phonemize(phonemizer, sentence):
        for piece in clause_pieces(phonemes, max_phonemes):
            if piece:
                yield phonemes_to_ids(piece, id_map)


def pcm_for_job(
    ready: ReadyVoice,
    job: SpeechJob,
    settings: SynthesisSettings,
    speaker_id: int | None,
    stop: threading.Event,
    gate: Gate = ungated,
) -> Iterator[bytes]:
    """Blocking: PCM bytes per decoded chunk, sentence after sentence.

    ``gate`` waits for the job's turn before each synthesis step (``scheduler``).
    """
    scales = ready.voice.scales(settings.noise_scale, settings.length_scale, settings.noise_w_scale)
    id_map = ready.voice.config.phoneme_id_map
    silence_seconds = settings.sentence_silence
    silence = bytes(2 * int(silence_seconds * ready.voice.config.sample_rate))
    # Once audio plays, later utterances size their chunks by what is
    # already buffered instead of starting small again.
    clock = job.clock
    for index, sentence in enumerate(job.sentences):
        pieces = utterance_ids(ready.phonemizer, sentence, id_map, settings.max_utterance_phonemes)
        for ids in pieces:
            for chunk in ready.streamer.stream(ids, scales, speaker_id, clock, gate):
                if stop.is_set():
                    return
                yield to_pcm16(chunk.audio, ready.gain)
        is_last = index == len(job.sentences) - 1
        if silence and (not is_last or job.trailing_silence):
            clock.sent(silence_seconds)
            yield silence
