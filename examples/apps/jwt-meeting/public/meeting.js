// Logs in, joins the room named in the URL, and holds one RTCPeerConnection per other
// participant: the newcomer offers to everyone already in the room.
const params = new URLSearchParams(location.search);
const room = params.get("room") || "default";
const name = params.get("name") || "guest";
const statusEl = document.getElementById("status");
const pcs = new Map();
let localStream = null;

const setStatus = (s) => (statusEl.textContent = s);

function peer(id, socket) {
  if (pcs.has(id)) return pcs.get(id);
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.queued = [];
  localStream.getTracks().forEach((t) => pc.addTrack(t, localStream));
  pc.onicecandidate = (e) => e.candidate && socket.emit("ice-candidate", e.candidate, room, id);
  pc.ontrack = (e) => {
    let v = document.getElementById("v-" + id);
    if (!v) {
      v = document.createElement("video");
      v.id = "v-" + id;
      v.autoplay = true;
      v.playsInline = true;
      document.getElementById("remotes").appendChild(v);
    }
    v.srcObject = e.streams[0];
  };
  pc.onconnectionstatechange = () => setStatus(pc.connectionState);
  pcs.set(id, pc);
  return pc;
}

async function flush(pc) {
  while (pc.queued.length) await pc.addIceCandidate(pc.queued.shift());
}

(async () => {
  const login = await fetch("/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  const { token } = await login.json();
  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById("local").srcObject = localStream;
  const socket = io({ auth: { token } });
  socket.on("connect_error", (e) => setStatus("refused: " + e.message));
  socket.on("connect", () => {
    setStatus("waiting");
    socket.emit("join", room);
  });
  socket.on("ready", async (_room, present) => {
    for (const id of present) {
      const pc = peer(id, socket);
      await pc.setLocalDescription(await pc.createOffer());
      socket.emit("offer", pc.localDescription, room, id);
    }
  });
  socket.on("offer", async (offer, _room, from) => {
    const pc = peer(from, socket);
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    socket.emit("answer", pc.localDescription, room, from);
    await flush(pc);
  });
  socket.on("answer", async (answer, _room, from) => {
    const pc = pcs.get(from);
    if (!pc) return;
    await pc.setRemoteDescription(answer);
    await flush(pc);
  });
  socket.on("ice-candidate", async (c, _room, from) => {
    const pc = peer(from, socket);
    if (!pc.remoteDescription) pc.queued.push(c);
    else await pc.addIceCandidate(c);
  });
  socket.on("full", () => setStatus("room full"));
})().catch((e) => setStatus("error: " + e));
