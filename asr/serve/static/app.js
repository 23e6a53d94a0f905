// The asr-serve page: upload a file or record the microphone, POST it to /transcribe, show the transcript one
// <span> per word, highlight the word being played, show the posteriorgram and any error the server sends.
// No libraries and nothing fetched from elsewhere: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const MiB = 1024 * 1024;

let limits = null;        // /health's limits: checked here too, so a too-large file is refused before uploading
let current = null;       // {blob, name}: what the transcript shows (re-run when the decoder changes)
let words = [];           // [{word, start, end, span}] of the current transcript
let active = -1;          // index of the highlighted word
let recorder = null;      // the recording in progress
let frame = 0;            // requestAnimationFrame id while playing

function setState(state, message = "") {
  document.body.dataset.state = state;  // idle | busy | recording | done | error (tests wait on it)
  $("status").textContent = message;
  const busy = state === "busy";
  $("file").disabled = busy;
  $("record").disabled = busy;
  $("decoder").disabled = busy;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function loadHealth() {
  try {
    const response = await fetch("health");
    const health = await response.json();
    limits = health.limits;
    $("model").textContent = `${health.model} · ${health.sample_rate} Hz`;
    const select = $("decoder");
    select.replaceChildren(...health.decoders.map((name) => new Option(name, name, false,
                                                                       name === health.default_decoder)));
    $("limits").textContent = `up to ${limits.max_audio_seconds} s of audio, ${limits.max_upload_mb} MiB`;
  } catch (err) {
    showError(`cannot reach the server: ${err.message}`);
  }
}

async function transcribe(blob, name) {
  clearError();
  if (limits && blob.size > limits.max_upload_mb * MiB) {
    showError(`${name} is ${(blob.size / MiB).toFixed(1)} MiB; this server takes at most ` +
              `${limits.max_upload_mb} MiB`);
    return;
  }
  current = {blob, name};
  setState("busy", `Transcribing ${name}…`);
  const failed = (message) => {  // the result card would show the previous file: hide it
    $("player").pause();
    $("result").hidden = true;
    showError(message);
  };
  const form = new FormData();
  form.append("audio", blob, name);
  form.append("decoder", $("decoder").value);
  const url = "transcribe" + ($("want-posteriorgram").checked ? "?posteriorgram=1" : "");
  let body;
  try {
    const response = await fetch(url, {method: "POST", body: form});
    body = await response.json().catch(() => ({error: `${response.status} ${response.statusText}`}));
    if (!response.ok) {
      failed(body.error || `the server answered ${response.status}`);
      return;
    }
  } catch (err) {
    failed(`the upload failed: ${err.message}`);
    return;
  }
  render(body, blob);
  setState("done");
}

function render(result, blob) {
  const player = $("player");
  player.pause();
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob);

  const transcript = $("transcript");
  transcript.replaceChildren();
  words = [];
  active = -1;
  result.words.forEach((w, i) => {
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = w.word;
    if (w.start !== null) {
      span.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s`;
      span.addEventListener("click", () => { player.currentTime = w.start; player.play(); });
    }
    if (i > 0) transcript.append(" ");
    transcript.append(span);
    words.push({...w, span});
  });
  transcript.classList.toggle("empty", words.length === 0);
  if (words.length === 0) transcript.textContent = "(no words recognised)";

  $("result-name").textContent = result.filename;
  $("meta").textContent = `${result.duration.toFixed(2)} s · ${result.decoder} · ` +
                          `transcribed in ${result.processing_seconds.toFixed(2)} s`;
  const figure = $("posteriorgram-figure");
  if (result.posteriorgram) $("posteriorgram").src = result.posteriorgram;
  figure.hidden = !result.posteriorgram;
  $("result").hidden = false;
}

// The word whose [start, end] holds the playback time gets the `active` class; between words none has it.
function highlight() {
  const t = $("player").currentTime;
  const index = words.findIndex((w) => w.start !== null && w.start <= t && t <= w.end);
  if (index === active) return;
  if (active >= 0) words[active].span.classList.remove("active");
  if (index >= 0) words[index].span.classList.add("active");
  active = index;
}

// timeupdate fires only about four times a second, too coarse for short words: follow every frame while playing.
function follow() {
  highlight();
  frame = $("player").paused ? 0 : requestAnimationFrame(follow);
}

// ------------------------------------------------------------------------------------------------ recording
// Recorded as raw samples through Web Audio and sent as 16-bit PCM WAV: MediaRecorder would give webm/opus,
// which the server's audio reader (libsndfile) does not read.

async function startRecording() {
  clearError();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: false,
                                                                noiseSuppression: false, autoGainControl: false}});
  } catch (err) {
    showError(`no microphone: ${err.message}`);
    return;
  }
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(stream);
  // A ScriptProcessorNode, though deprecated for AudioWorklet, runs in every browser without a second module file.
  const node = context.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  source.connect(node);
  node.connect(context.destination);  // Chrome runs the node only when it is connected; it outputs silence
  const started = performance.now();
  const maxSeconds = limits ? limits.max_audio_seconds : Infinity;
  const timer = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    $("record-time").textContent = `${seconds.toFixed(1)} s`;
    if (seconds >= maxSeconds) stopRecording();
  }, 100);
  recorder = {stream, context, source, node, chunks, timer};
  $("record").classList.add("recording");
  $("record-label").textContent = "Stop";
  $("record-time").hidden = false;
  setState("recording", "Recording… press Stop when done.");
}

async function stopRecording() {
  const r = recorder;
  if (!r) return;
  recorder = null;
  clearInterval(r.timer);
  r.node.disconnect();
  r.source.disconnect();
  r.stream.getTracks().forEach((track) => track.stop());
  const rate = r.context.sampleRate;
  await r.context.close();
  $("record").classList.remove("recording");
  $("record-label").textContent = "Record";
  $("record-time").hidden = true;
  const stamp = new Date().toISOString().slice(11, 19).replaceAll(":", "");
  await transcribe(encodeWav(r.chunks, rate), `recording-${stamp}.wav`);
}

function encodeWav(chunks, sampleRate) {
  const n = chunks.reduce((sum, c) => sum + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const ascii = (offset, text) => [...text].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  ascii(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); ascii(8, "WAVE");
  ascii(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);   // PCM
  view.setUint16(22, 1, true); view.setUint32(24, sampleRate, true);               // mono, rate
  view.setUint32(28, 2 * sampleRate, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  ascii(36, "data"); view.setUint32(40, 2 * n, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (const x of chunk) {
      const s = Math.max(-1, Math.min(1, x));
      view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
      offset += 2;
    }
  }
  return new Blob([view.buffer], {type: "audio/wav"});
}

// ------------------------------------------------------------------------------------------------ wiring

$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) transcribe(file, file.name);
  e.target.value = "";  // choosing the same file again transcribes it again
});
$("record").addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
$("decoder").addEventListener("change", () => { if (current) transcribe(current.blob, current.name); });
const player = $("player");
player.addEventListener("play", () => { if (!frame) frame = requestAnimationFrame(follow); });
player.addEventListener("timeupdate", highlight);
player.addEventListener("seeked", highlight);

const input = $("input");
input.addEventListener("dragover", (e) => { e.preventDefault(); input.classList.add("dragging"); });
input.addEventListener("dragleave", () => input.classList.remove("dragging"));
input.addEventListener("drop", (e) => {
  e.preventDefault();
  input.classList.remove("dragging");
  const file = e.dataTransfer.files[0];
  if (file) transcribe(file, file.name);
});

loadHealth();
