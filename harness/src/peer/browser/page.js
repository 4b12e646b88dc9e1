// rtc-harness peer page: runs inside a browser driven over WebDriver.
//
// The harness talks to this page over a control WebSocket (URL in ?control=): it sends
// `ping` (clock sync) and `command` messages; the page answers `pong` / `reply` and pushes every
// observation as an `event`, stamped with performance.timeOrigin + performance.now() (Unix-epoch
// ms on the page's clock). Signaling goes to the same server, with the same messages, as a bot's.
"use strict";

const params = new URLSearchParams(location.search);
const control = new WebSocket(params.get("control"));
const now = () => performance.timeOrigin + performance.now();
const conns = new Map();

function post(msg) {
  if (control.readyState === WebSocket.OPEN) control.send(JSON.stringify(msg));
}
function emit(connection, event) {
  post({ type: "event", t: now(), connection, event });
}

// Test messages: "SSSSSSSSSS:CCCCCCCC:" + filler, see harness/src/payload.rs.
function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
function encode(seq, len) {
  let body = "";
  for (let i = 0; i < len - 20; i++) body += String.fromCharCode(97 + ((seq + i) % 26));
  return String(seq).padStart(10, "0") + ":" + fnv1a32(body).toString(16).padStart(8, "0") + ":" + body;
}
function check(data) {
  if (typeof data !== "string" || data.length < 20 || data[10] !== ":" || data[19] !== ":") {
    return { seq: -1, intact: false };
  }
  const seq = Number(data.slice(0, 10));
  const sum = parseInt(data.slice(11, 19), 16);
  if (!Number.isInteger(seq)) return { seq: -1, intact: false };
  return { seq, intact: sum === fnv1a32(data.slice(20)) };
}
// Same vector as payload.rs's unit test: a mismatch here would corrupt every message.
const SELF_CHECK = encode(3, 24) === "0000000003:96e2cbf1:defg";

function candidateType(line) {
  const m = / typ (\S+)/.exec(line || "");
  return m ? m[1] : "unknown";
}

function attachChannel(c, connection, dc) {
  c.channels.set(dc.label, dc);
  let opened = false;
  let next = 0;
  const onopen = () => {
    if (!opened) {
      opened = true;
      emit(connection, { type: "data-channel-open", label: dc.label });
    }
  };
  dc.onopen = onopen;
  // A channel created by the remote side can be open before we get here.
  if (dc.readyState === "open") onopen();
  dc.binaryType = "arraybuffer";
  dc.onmessage = (e) => {
    const t = now();
    const r = check(typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data));
    const inOrder = r.seq === next;
    if (r.seq >= 0) next = r.seq + 1;
    post({
      type: "event", t, connection,
      event: { type: "message-received", label: dc.label, seq: r.seq, intact: r.intact, in_order: inOrder && r.seq >= 0 },
    });
  };
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

async function connect(cmd) {
  const { connection, role, data_channel, trickle, signaling_url } = cmd;
  const iceServers = (cmd.ice_servers || []).map((s) => {
    const server = { urls: s.urls };
    if (s.username != null) server.username = s.username;
    if (s.credential != null) server.credential = s.credential;
    return server;
  });
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: cmd.ice_transport_policy || "all" });
  const c = { pc, channels: new Map(), pending: [], ws: null, outbox: [], offered: false, queue: Promise.resolve(), nextSeq: new Map(), closing: false };
  conns.set(connection, c);
  const state = (machine, value) => emit(connection, { type: "state", machine, state: value });
  state("connectionState", pc.connectionState);
  state("iceConnectionState", pc.iceConnectionState);
  state("signalingState", pc.signalingState);
  state("iceGatheringState", pc.iceGatheringState);
  pc.onconnectionstatechange = () => state("connectionState", pc.connectionState);
  pc.oniceconnectionstatechange = () => state("iceConnectionState", pc.iceConnectionState);
  pc.onsignalingstatechange = () => state("signalingState", pc.signalingState);
  pc.onicegatheringstatechange = () => state("iceGatheringState", pc.iceGatheringState);
  const sig = (msg) => {
    if (c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(msg));
    else c.outbox.push(JSON.stringify(msg));
  };
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      emit(connection, { type: "local-candidate", candidate_type: candidateType(e.candidate.candidate), candidate: e.candidate.candidate });
    }
    if (!trickle) return;
    if (e.candidate && e.candidate.candidate) sig({ type: "candidate", candidate: e.candidate.toJSON() });
    else if (!e.candidate) sig({ type: "candidate", candidate: null });
  };
  pc.onicecandidateerror = (e) => emit(connection, {
    type: "ice-candidate-error", url: String(e.url || ""), error_code: e.errorCode || 0, error_text: String(e.errorText || ""),
  });
  pc.ondatachannel = (e) => attachChannel(c, connection, e.channel);
  // Remote media: every video track plays in a <video>; its first painted frame is timed with
  // requestVideoFrameCallback.
  c.framesPainted = 0;
  pc.ontrack = (e) => {
    emit(connection, { type: "track-received", kind: e.track.kind });
    if (e.track.kind !== "video") return;
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.srcObject = new MediaStream([e.track]);
    document.body.appendChild(video);
    const onFrame = () => {
      if (c.framesPainted++ === 0) emit(connection, { type: "first-video-frame" });
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    video.play().catch(fail);
  };
  // Media with W3C transceiver semantics (see media.rs for the bot's side).
  const media = cmd.media || [];
  const direction = cmd.direction || "sendrecv";
  if (media.length && (direction === "sendrecv" || direction === "sendonly")) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: media.includes("audio"), video: media.includes("video") });
    c.localStream = stream;
    for (const t of stream.getTracks()) {
      pc.addTrack(t, stream);
    }
    if (direction === "sendonly") pc.getTransceivers().forEach((t) => { t.direction = "sendonly"; });
  } else if (media.length && role === "offerer") {
    for (const kind of media) pc.addTransceiver(kind, { direction });
  }
  c.inactiveAnswer = media.length && role === "answerer" && direction === "inactive";
  if (role === "offerer" && data_channel) attachChannel(c, connection, pc.createDataChannel(data_channel));

  const fail = (e) => emit(connection, { type: "error", message: String(e && e.message ? e.message : e) });
  const localSdp = async (desc) => {
    await pc.setLocalDescription(desc);
    if (!trickle) await gatheringComplete(pc);
    return pc.localDescription.sdp;
  };
  const flush = async () => {
    for (const cand of c.pending.splice(0)) await pc.addIceCandidate(cand).catch(fail);
  };
  const onSignal = async (msg) => {
    switch (msg.type) {
      case "joined":
        emit(connection, { type: "signaling-joined", peer_id: String(msg.peer_id || "") });
        break;
      case "ready":
        // The first ready starts negotiation; one after a reconnect (the room complete again)
        // does not renegotiate by itself.
        if (role === "offerer" && !c.offered) {
          c.offered = true;
          emit(connection, { type: "create-offer" });
          const offer = await pc.createOffer();
          sig({ type: "offer", sdp: await localSdp(offer) });
        }
        break;
      case "offer":
        await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        emit(connection, { type: "offer-applied" });
        if (c.inactiveAnswer) pc.getTransceivers().forEach((t) => { t.direction = "inactive"; });
        await flush();
        sig({ type: "answer", sdp: await localSdp(await pc.createAnswer()) });
        break;
      case "answer":
        await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        emit(connection, { type: "answer-applied" });
        await flush();
        break;
      case "candidate":
        if (!msg.candidate) break;
        emit(connection, { type: "remote-candidate", candidate_type: candidateType(msg.candidate.candidate), candidate: msg.candidate.candidate });
        if (pc.remoteDescription) await pc.addIceCandidate(msg.candidate);
        else c.pending.push(msg.candidate);
        break;
      case "peer-left":
        // A mesh call's app closes the connection of a peer that left and keeps the rest.
        if (cmd.close_on_peer_left && !c.closing) close({ connection });
        break;
      case "error":
        throw new Error("signaling server: " + msg.code + ": " + msg.message);
    }
  };
  const open = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(signaling_url);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("signaling socket error: " + signaling_url));
  });
  // A socket that closes while in use (a server restart, a dropped connection) is reopened
  // as apps do, rejoining the same room: a first attempt at once, then 100 ms apart, doubling
  // to 2 s, for about a minute. Messages sent meanwhile wait in c.outbox.
  const attach = (ws) => {
    c.ws = ws;
    ws.onclose = () => {
      if (c.closing) return;
      emit(connection, { type: "signaling-closed" });
      reconnect();
    };
    // Signaling messages are handled strictly one after another.
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch (e) { fail(e); return; }
      c.queue = c.queue.then(() => onSignal(msg)).catch(fail);
    };
    ws.send(JSON.stringify({ type: "join", room: cmd.room }));
    for (const m of c.outbox.splice(0)) ws.send(m);
  };
  const reconnect = async () => {
    let delay = 0;
    for (let attempt = 0; attempt < 36 && !c.closing; attempt++) {
      if (delay) await new Promise((r) => setTimeout(r, delay));
      delay = delay ? Math.min(delay * 2, 2000) : 100;
      try {
        attach(await open());
        return;
      } catch (e) { /* next attempt */ }
    }
    if (!c.closing) fail(new Error("signaling reconnect failed: " + signaling_url));
  };
  attach(await open());
  // An ICE restart initiated here: a new offer with fresh ICE credentials, queued behind any
  // signaling still being handled.
  // A track added mid-call: renegotiate with a new offer, queued like the restart.
  c.addTrack = (kind) => {
    const done = c.queue.then(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: true });
      for (const t of stream.getTracks()) pc.addTrack(t, stream);
      emit(connection, { type: "create-offer" });
      const offer = await pc.createOffer();
      sig({ type: "offer", sdp: await localSdp(offer) });
    });
    c.queue = done.catch(fail);
    return done;
  };
  c.restart = () => {
    const done = c.queue.then(async () => {
      pc.restartIce();
      emit(connection, { type: "create-offer" });
      const offer = await pc.createOffer();
      sig({ type: "offer", sdp: await localSdp(offer) });
    });
    c.queue = done.catch(fail);
    return done;
  };
  return null;
}

// What arrived, from getStats() inbound-rtp (webrtc-stats names).
async function mediaCounters(cmd) {
  const c = conns.get(cmd.connection);
  if (!c) throw new Error("no connection " + cmd.connection);
  const out = {
    video_packets_received: 0, video_frames: 0, video_key_frames: 0, audio_packets_received: 0,
    video_frames_received: 0, audio_total_samples_received: 0,
  };
  const stats = await c.pc.getStats();
  stats.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") {
      out.video_packets_received += s.packetsReceived || 0;
      out.video_frames += s.framesDecoded || 0;
      out.video_key_frames += s.keyFramesDecoded || 0;
      out.video_frames_received += s.framesReceived || 0;
    } else if (s.kind === "audio") {
      out.audio_packets_received += s.packetsReceived || 0;
      out.audio_total_samples_received += s.totalSamplesReceived || 0;
    }
  });
  return out;
}

// getStats(), the dictionaries the harness keeps (webrtc-stats types).
const KEPT_STATS = ["candidate-pair", "local-candidate", "remote-candidate", "inbound-rtp", "outbound-rtp", "transport", "data-channel"];
async function stats(cmd) {
  const c = conns.get(cmd.connection);
  if (!c) throw new Error("no connection " + cmd.connection);
  const out = [];
  (await c.pc.getStats()).forEach((s) => {
    if (KEPT_STATS.includes(s.type)) out.push(s);
  });
  return out;
}

async function addTrack(cmd) {
  const c = conns.get(cmd.connection);
  if (!c) throw new Error("no connection " + cmd.connection);
  await c.addTrack(cmd.kind);
  return null;
}

async function restartIce(cmd) {
  const c = conns.get(cmd.connection);
  if (!c) throw new Error("no connection " + cmd.connection);
  await c.restart();
  return null;
}

async function send(cmd) {
  const c = conns.get(cmd.connection);
  const dc = c && c.channels.get(cmd.channel);
  if (!dc) throw new Error("no data channel " + cmd.channel);
  dc.bufferedAmountLowThreshold = 256 * 1024;
  // A second send on the same channel continues the sequence.
  const first = c.nextSeq.get(cmd.channel) || 0;
  c.nextSeq.set(cmd.channel, first + cmd.messages);
  for (let seq = first; seq < first + cmd.messages; seq++) {
    if (dc.bufferedAmount > 1024 * 1024) {
      await new Promise((r) => dc.addEventListener("bufferedamountlow", r, { once: true }));
    }
    dc.send(encode(seq, cmd.bytes));
  }
  emit(cmd.connection, { type: "messages-sent", label: cmd.channel, count: cmd.messages });
  return null;
}

function close(cmd) {
  const c = conns.get(cmd.connection);
  if (!c) throw new Error("no connection " + cmd.connection);
  emit(cmd.connection, { type: "closed" });
  c.pc.close();
  if (c.localStream) c.localStream.getTracks().forEach((t) => t.stop());
  c.closing = true;
  if (c.ws) c.ws.close();
  // close() changes these without firing events (W3C webrtc-pc, close()).
  const st = (machine, value) => emit(cmd.connection, { type: "state", machine, state: value });
  st("signalingState", c.pc.signalingState);
  st("iceConnectionState", c.pc.iceConnectionState);
  st("connectionState", c.pc.connectionState);
  return null;
}

// The selected candidate pair's types, from getStats() (webrtc-stats: transport ->
// selectedCandidatePairId -> candidate-pair -> local-candidate / remote-candidate).
async function selectedPair(cmd) {
  const c = conns.get(cmd.connection);
  if (!c) throw new Error("no connection " + cmd.connection);
  const stats = await c.pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) {
    // Firefox has no selectedCandidatePairId: the pair marked selected (or nominated and succeeded).
    stats.forEach((s) => {
      if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded")) && !pair) pair = s;
    });
  }
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  return { local: local && local.candidateType, remote: remote && remote.candidateType };
}

const handlers = { connect, send, close, "selected-pair": selectedPair, "restart-ice": restartIce, "media-counters": mediaCounters, "add-track": addTrack, stats };

control.onmessage = async (m) => {
  const msg = JSON.parse(m.data);
  if (msg.type === "ping") {
    post({ type: "pong", id: msg.id, t: now() });
  } else if (msg.type === "command") {
    try {
      const h = handlers[msg.command.cmd];
      if (!h) throw new Error("unknown command " + msg.command.cmd);
      post({ type: "reply", id: msg.id, ok: true, value: await h(msg.command) });
    } catch (e) {
      post({ type: "reply", id: msg.id, ok: false, value: String(e && e.message ? e.message : e) });
    }
  }
};

control.onopen = async () => {
  // Chromium gathers loopback host candidates only once getUserMedia was granted in the page
  // (with --allow-loopback-in-peer-connection); the fake devices make the grant silent.
  let media = "not requested";
  try {
    const s = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    s.getTracks().forEach((t) => t.stop());
    media = "granted";
  } catch (e) {
    media = "denied: " + e;
  }
  post({ type: "hello", user_agent: navigator.userAgent, media, self_check: SELF_CHECK });
};
// The page's console output goes to the harness too (kept with the results).
for (const level of ["log", "info", "warn", "error", "debug"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    original(...args);
    post({ type: "console", level, text: args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ") });
  };
}
window.addEventListener("error", (e) => post({ type: "page-error", message: String(e.message) }));
window.addEventListener("unhandledrejection", (e) => post({ type: "page-error", message: String(e.reason) }));
