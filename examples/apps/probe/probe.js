// A page that tries to tell whether its RTCPeerConnection is instrumented. It has no test hook:
// it records what it found in window.probe ({done, failures}) and in #result, as any page
// would show its state. It creates four PCs for the checks, then two more that connect to each
// other inside the page, using both on* handler properties and addEventListener.
"use strict";
window.probe = { done: false, failures: [] };
const failures = window.probe.failures;
const check = (name, f) => {
  try {
    if (!f()) failures.push(name);
  } catch (e) {
    failures.push(name + " threw " + e);
  }
};

check("instanceof", () => new RTCPeerConnection() instanceof RTCPeerConnection);
check("constructor", () => new RTCPeerConnection().constructor === RTCPeerConnection);
check("prototype", () => Object.getPrototypeOf(new RTCPeerConnection()) === RTCPeerConnection.prototype);
check("subclass", () => {
  class Mine extends RTCPeerConnection {
    hello() {
      return 42;
    }
  }
  const m = new Mine();
  return m instanceof Mine && m instanceof RTCPeerConnection && m.hello() === 42;
});
check("name", () => RTCPeerConnection.name === "RTCPeerConnection");
check("static generateCertificate", () => typeof RTCPeerConnection.generateCertificate === "function");
check("method names", () => ["createOffer", "createAnswer", "setLocalDescription", "setRemoteDescription", "addIceCandidate"]
  .every((m) => RTCPeerConnection.prototype[m].name === m));
check("no enumerable globals added", () => !Object.keys(window).some((k) => /harness/i.test(k)));
check("typeof", () => typeof RTCPeerConnection === "function");

(async () => {
  const cert = await RTCPeerConnection.generateCertificate({ name: "ECDSA", namedCurve: "P-256" });
  const a = new RTCPeerConnection({ certificates: [cert] });
  const b = new RTCPeerConnection();
  let viaProperty = false;
  let viaListener = false;
  a.onicecandidate = (e) => {
    viaProperty = true;
    if (e.candidate) b.addIceCandidate(e.candidate);
  };
  b.addEventListener("icecandidate", (e) => {
    viaListener = true;
    if (e.candidate) a.addIceCandidate(e.candidate);
  });
  const connected = (pc) => new Promise((resolve) => {
    if (pc.connectionState === "connected") resolve();
    pc.addEventListener("connectionstatechange", () => pc.connectionState === "connected" && resolve());
  });
  const opened = new Promise((resolve) => {
    b.ondatachannel = (e) => {
      e.channel.onmessage = (m) => resolve(m.data);
    };
  });
  const dc = a.createDataChannel("probe");
  dc.onopen = () => dc.send("hello");
  const offer = await a.createOffer();
  await a.setLocalDescription(offer);
  await b.setRemoteDescription(offer);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  await Promise.all([connected(a), connected(b)]);
  check("onicecandidate property", () => viaProperty);
  check("icecandidate listener", () => viaListener);
  const message = await opened;
  check("message arrives", () => message === "hello");
  // A rejected call still rejects, with the same error, for the page.
  let rejected = null;
  try {
    await b.setRemoteDescription({ type: "answer", sdp: "v=0\r\n" });
  } catch (e) {
    rejected = e;
  }
  check("a rejection reaches the page", () => rejected instanceof DOMException);
})()
  .catch((e) => failures.push("call failed: " + e))
  .finally(() => {
    window.probe.done = true;
    document.getElementById("result").textContent = failures.length ? "FAILED: " + failures.join("; ") : "ok";
  });
