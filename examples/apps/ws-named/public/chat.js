// Logs in with ?name=, and with ?call= offers a data channel to that user; the other side
// answers whoever calls. Messages typed in #msg go over the data channel and show in #log.
const params = new URLSearchParams(location.search);
const me = params.get("name") || "guest";
const callee = params.get("call");
const statusEl = document.getElementById("status");
const log = (who, text) => {
  const li = document.createElement("li");
  li.textContent = who + ": " + text;
  document.getElementById("log").appendChild(li);
};
const ws = new WebSocket(`ws://${location.host}/ws`);
const send = (msg) => ws.send(JSON.stringify(msg));
let pc = null;
let channel = null;
let peerName = null;

function setup(name) {
  peerName = name;
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.onicecandidate = (e) => e.candidate && send({ type: "candidate", candidate: e.candidate, name: peerName });
  pc.onconnectionstatechange = () => {
    if (!channel || channel.readyState !== "open") statusEl.textContent = pc.connectionState;
  };
  pc.ondatachannel = (e) => use(e.channel);
}
function use(dc) {
  channel = dc;
  dc.onopen = () => (statusEl.textContent = "chat open");
  if (dc.readyState === "open") statusEl.textContent = "chat open";
  dc.onmessage = (e) => log(peerName, e.data);
}

document.getElementById("send").onclick = () => {
  const input = document.getElementById("msg");
  if (channel && channel.readyState === "open" && input.value) {
    channel.send(input.value);
    log(me, input.value);
    input.value = "";
  }
};

ws.onopen = () => send({ type: "login", name: me });
ws.onmessage = async (e) => {
  const msg = JSON.parse(e.data);
  switch (msg.type) {
    case "login":
      statusEl.textContent = msg.success ? "logged in" : "login refused";
      if (msg.success && callee) {
        setup(callee);
        use(pc.createDataChannel("chat"));
        await pc.setLocalDescription(await pc.createOffer());
        send({ type: "offer", offer: pc.localDescription, name: callee });
      }
      break;
    case "offer":
      setup(msg.name);
      await pc.setRemoteDescription(msg.offer);
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: "answer", answer: pc.localDescription, name: msg.name });
      break;
    case "answer":
      await pc.setRemoteDescription(msg.answer);
      break;
    case "candidate":
      if (pc) await pc.addIceCandidate(msg.candidate);
      break;
    case "error":
      statusEl.textContent = "error: " + msg.message;
      break;
  }
};
