// The page of both sides. The caller (/create) offers once the server says `ready`; the callee
// (/join) answers. Candidates that arrive before the remote description are queued.
const params = new URLSearchParams(location.search);
const room = params.get("room") || "default";
const isCaller = location.pathname.startsWith("/create");
const statusEl = document.getElementById("status");
document.getElementById("role").textContent = isCaller ? "Caller" : "Callee";

const socket = io();
let pc = null;
let localStream = null;
let config = { iceServers: [] };
const queued = [];

function setStatus(s) {
  statusEl.textContent = s;
}

function createPeerConnection() {
  pc = new RTCPeerConnection(config);
  localStream.getTracks().forEach((t) => pc.addTrack(t, localStream));
  pc.onicecandidate = (e) => {
    if (e.candidate) socket.emit("ice-candidate", e.candidate, room);
  };
  pc.ontrack = (e) => {
    document.getElementById("remote").srcObject = e.streams[0];
  };
  pc.onconnectionstatechange = () => setStatus(pc.connectionState);
}

async function flushQueued() {
  while (queued.length) await pc.addIceCandidate(queued.shift());
}

socket.on("ready", async () => {
  if (!isCaller) return;
  createPeerConnection();
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  socket.emit("offer", offer, room);
});

socket.on("offer", async (offer) => {
  createPeerConnection();
  await pc.setRemoteDescription(offer);
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  socket.emit("answer", answer, room);
  await flushQueued();
});

socket.on("answer", async (answer) => {
  await pc.setRemoteDescription(answer);
  await flushQueued();
});

socket.on("ice-candidate", async (candidate) => {
  if (!pc || !pc.remoteDescription) queued.push(candidate);
  else await pc.addIceCandidate(candidate);
});

socket.on("full", () => setStatus("room full"));
socket.on("bye", () => setStatus("peer left"));

(async () => {
  config = await (await fetch("/config.json")).json();
  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById("local").srcObject = localStream;
  setStatus("waiting");
  socket.emit("join", room);
})().catch((e) => setStatus("error: " + e));
