// The page: voices, "try it" (streamed PCM played with Web Audio), uploads, status.
// Every URL is relative to the page's <base>, so it works behind Home Assistant's ingress.
"use strict";

const $ = (id) => document.getElementById(id);
const STATUS_EVERY_MS = 2000;
const START_DELAY = 0.05; // seconds between the first chunk's arrival and its playback
const CHANGE = { "X-Requested-With": "piper-stream" }; // the server refuses changes without it
let voices = [];

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.className = isError ? "error" : "ok";
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function seconds(value, digits = 2) {
  return value == null ? "–" : `${value.toFixed(digits)} s`;
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  let body = {};
  try {
    body = await response.json();
  } catch (error) {
    body = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// ---------------------------------------------------------------- voices

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderVoices() {
  const body = $("voices").tBodies[0];
  body.replaceChildren();
  for (const voice of voices) {
    const row = body.insertRow();
    row.dataset.voice = voice.name;
    cell(row, voice.name + (voice.default ? " (default)" : ""));
    cell(row, voice.language);
    cell(row, voice.quality || "–");
    cell(row, voice.speakers.length ? String(voice.speakers.length) : "1", "num");
    cell(row, megabytes(voice.size_bytes), "num");
    cell(row, voice.source);
    cell(row, voice.loaded ? "yes" : "no");
    const actions = row.insertCell();
    if (voice.source === "custom") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "danger";
      button.textContent = "Delete";
      button.setAttribute("aria-label", `Delete ${voice.name}`);
      button.addEventListener("click", () => deleteVoice(voice.name));
      actions.append(button);
    }
  }
  const select = $("try-voice");
  const chosen = select.value;
  select.replaceChildren();
  for (const voice of voices) {
    const option = new Option(`${voice.name} (${voice.language})`, voice.name);
    option.selected = chosen ? voice.name === chosen : voice.default;
    select.append(option);
  }
  renderSpeakers();
}

function renderSpeakers() {
  const voice = voices.find((v) => v.name === $("try-voice").value);
  const select = $("try-speaker");
  const chosen = select.value;
  select.replaceChildren(new Option("default", ""));
  for (const speaker of voice ? voice.speakers : []) {
    select.append(new Option(speaker, speaker, false, speaker === chosen));
  }
  select.disabled = !voice || voice.speakers.length === 0;
}

async function loadVoices() {
  try {
    const body = await getJson("api/voices");
    voices = body.voices;
    renderVoices();
    $("upload-button").disabled = !body.uploads;
    if (!body.uploads) say("upload-message", "Uploads are off: the server has no voice folder.", true);
  } catch (error) {
    say("voices-message", `Cannot list voices: ${error.message}`, true);
  }
}

async function deleteVoice(name) {
  try {
    const url = `api/voices/${encodeURIComponent(name)}`;
    const body = await getJson(url, { method: "DELETE", headers: CHANGE });
    say("voices-message", body.message);
  } catch (error) {
    say("voices-message", `Not deleted: ${error.message}`, true);
  }
  await loadVoices();
}

async function upload(event) {
  event.preventDefault();
  const button = $("upload-button");
  button.disabled = true;
  say("upload-message", "Uploading and checking the voice…");
  try {
    const form = new FormData($("upload-form"));
    const body = await getJson("api/voices", { method: "POST", headers: CHANGE, body: form });
    say("upload-message", body.message);
    $("upload-form").reset();
  } catch (error) {
    say("upload-message", `Upload refused: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
  await loadVoices();
}

// ---------------------------------------------------------------- try it

const plot = { points: [], running: false, audio: null, startAt: 0, scheduled: 0, received: 0, t0: 0 };

function playedSeconds() {
  if (!plot.audio || plot.startAt === 0) return 0;
  return Math.min(plot.scheduled, Math.max(0, plot.audio.currentTime - plot.startAt));
}

function drawPlot() {
  const canvas = $("try-plot");
  const g = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  const pad = 34;
  const w = canvas.width - pad - 8;
  const h = canvas.height - pad - 8;
  const now = (performance.now() - plot.t0) / 1000;
  const playing = plot.audio && plot.startAt && plot.audio.currentTime < plot.startAt + plot.scheduled;
  if (plot.running || playing) {
    plot.points.push({ t: now, arrived: plot.received, played: playedSeconds() });
  }
  $("try-figures").dataset.playedSeconds = playedSeconds().toFixed(3);
  const last = plot.points[plot.points.length - 1] || { t: 1, arrived: 1 };
  const maxT = Math.max(1, last.t);
  const maxY = Math.max(1, plot.received || 0);
  const x = (t) => pad + (t / maxT) * w;
  const y = (s) => 8 + h - (s / maxY) * h;
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.strokeStyle = style.getPropertyValue("--border");
  g.fillStyle = style.getPropertyValue("--muted");
  g.font = "12px system-ui, sans-serif";
  g.strokeRect(pad, 8, w, h);
  g.fillText("0", pad - 12, 8 + h + 14);
  g.fillText(`${maxT.toFixed(1)} s`, pad + w - 34, 8 + h + 14);
  g.fillText(`${maxY.toFixed(1)} s`, 2, 18);
  for (const [key, color] of [["arrived", "--arrived"], ["played", "--played"]]) {
    g.strokeStyle = style.getPropertyValue(color);
    g.lineWidth = 2;
    g.beginPath();
    plot.points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[key])) : g.moveTo(x(p.t), y(p[key]))));
    g.stroke();
  }
  if (plot.running || playing) requestAnimationFrame(drawPlot);
}

function showFigures(figures) {
  const node = $("try-figures");
  node.dataset.receivedSeconds = figures.received.toFixed(3);
  node.dataset.scheduledSeconds = figures.scheduled.toFixed(3);
  $("fig-first").textContent = figures.first == null ? "–" : `${Math.round(figures.first * 1000)} ms`;
  $("fig-rtf").textContent = figures.rtf == null ? "–" : figures.rtf.toFixed(3);
  $("fig-received").textContent = seconds(figures.received);
  $("fig-scheduled").textContent = seconds(figures.scheduled);
  $("fig-gaps").textContent = String(figures.gaps);
}

// 16-bit little-endian mono PCM -> float samples; an odd byte waits for the next piece.
function pcmToFloat(bytes) {
  const count = bytes.length >> 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

async function speak(event) {
  event.preventDefault();
  const button = $("try-button");
  button.disabled = true;
  say("try-message", "Speaking…");
  if (!plot.audio) plot.audio = new AudioContext();
  const audio = plot.audio;
  await audio.resume();
  Object.assign(plot, { points: [], running: true, startAt: 0, scheduled: 0, received: 0 });
  plot.t0 = performance.now();
  const figures = { first: null, rtf: null, received: 0, scheduled: 0, gaps: 0 };
  showFigures(figures);
  requestAnimationFrame(drawPlot);
  try {
    const response = await fetch("api/speak", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...CHANGE },
      body: JSON.stringify({
        text: $("try-text").value,
        voice: $("try-voice").value,
        speaker: $("try-speaker").value,
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `${response.status} ${response.statusText}`);
    }
    const rate = Number(response.headers.get("X-Audio-Rate"));
    const reader = response.body.getReader();
    let carry = new Uint8Array(0);
    let end = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const bytes = new Uint8Array(carry.length + value.length);
      bytes.set(carry);
      bytes.set(value, carry.length);
      const samples = pcmToFloat(bytes);
      carry = bytes.slice(samples.length * 2);
      if (samples.length === 0) continue;
      if (figures.first == null) {
        figures.first = (performance.now() - plot.t0) / 1000;
        plot.startAt = audio.currentTime + START_DELAY;
        end = plot.startAt;
      }
      const buffer = audio.createBuffer(1, samples.length, rate);
      buffer.copyToChannel(samples, 0);
      const source = audio.createBufferSource();
      source.buffer = buffer;
      source.connect(audio.destination);
      const when = Math.max(end, audio.currentTime);
      if (when > end + 0.001) figures.gaps += 1; // the player ran dry before this arrived
      source.start(when);
      end = when + buffer.duration;
      figures.received += samples.length / rate;
      figures.scheduled += buffer.duration;
      plot.received = figures.received;
      plot.scheduled = end - plot.startAt;
      showFigures(figures);
    }
    const total = (performance.now() - plot.t0) / 1000;
    figures.rtf = figures.received ? total / figures.received : null;
    showFigures(figures);
    say("try-message", `Spoke ${seconds(figures.received)} of audio in ${seconds(total)}.`);
  } catch (error) {
    say("try-message", `Could not speak: ${error.message}`, true);
  } finally {
    plot.running = false;
    button.disabled = false;
  }
  await Promise.all([loadVoices(), loadStatus()]); // "loaded" and the counters changed
}

// ---------------------------------------------------------------- status

function duration(totalSeconds) {
  const s = Math.floor(totalSeconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

async function loadStatus() {
  try {
    const s = await getJson("api/status");
    const ms = (v) => (v == null ? "–" : `${Math.round(v * 1000)} ms`);
    const items = [
      ["Uptime", duration(s.uptime)],
      ["Requests", String(s.requests)],
      ["Failed", String(s.failures)],
      ["First audio p50", ms(s.first_audio_p50)],
      ["First audio p95", ms(s.first_audio_p95)],
      ["RTF p50", s.rtf_p50 == null ? "–" : s.rtf_p50.toFixed(3)],
      ["Stalls", String(s.stalls)],
      ["Audio spoken", seconds(s.audio_seconds, 1)],
      ["Memory", megabytes(s.memory_bytes)],
      ["Loaded voices", s.loaded_voices.join(", ") || "none"],
    ];
    $("status").replaceChildren(
      ...items.map(([term, value]) => {
        const div = document.createElement("div");
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = term;
        dd.textContent = value;
        div.append(dt, dd);
        return div;
      }),
    );
    $("version").textContent = `Version ${s.version}.`;
  } catch (error) {
    $("status").textContent = `Status unavailable: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("try-form").addEventListener("submit", speak);
  $("try-voice").addEventListener("change", renderSpeakers);
  $("upload-form").addEventListener("submit", upload);
  loadVoices();
  loadStatus();
  setInterval(loadStatus, STATUS_EVERY_MS);
  drawPlot();
});
