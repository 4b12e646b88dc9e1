// rtc-harness instrumentation of an app's own page (a *page peer*).
//
// Installed with WebDriver BiDi `script.addPreloadScript`, without a sandbox, so it runs in the
// page's own realm before any script of the page, in every document and frame. It observes
// every RTCPeerConnection the page creates and hands each observation to `channel` (a BiDi
// channel argument: each call becomes a `script.message` event on the harness's WebDriver
// BiDi socket, so the page's Content-Security-Policy never sees a request). A call carries the
// JSON text of an array of observations {t, realm, pc, event}: `t` is performance.timeOrigin + performance.now()
// (Unix-epoch ms on the page's clock), `realm` a random id of this document, `pc` the
// connection's number in this document, `event` an rtc-harness timeline event.
//
// What the page can tell: nothing it normally looks at. `RTCPeerConnection` becomes a Proxy of
// the native constructor (so `instanceof`, `prototype`, static methods such as
// generateCertificate, subclassing, `on*` properties and addEventListener all behave as before),
// and five prototype methods are wrapped in functions that call the native ones with the same
// arguments and return their result unchanged. A promise a method returns gets one more
// reaction (to record how it settled), so a rejection the page never handles no longer shows as
// an unhandled rejection. The harness reads stats through a non-enumerable `__rtcHarness`
// property of the window.
(channel) => {
  "use strict";
  const Native = window.RTCPeerConnection;
  if (typeof Native !== "function" || Object.prototype.hasOwnProperty.call(window, "__rtcHarness")) return;
  const now = () => performance.timeOrigin + performance.now();
  const realm = Math.random().toString(36).slice(2, 10) + Math.floor(now()).toString(36);
  const ids = new WeakMap();
  const pcs = new Map();
  let created = 0;
  const P = Native.prototype;
  const addListener = EventTarget.prototype.addEventListener;
  const nativeGetStats = P.getStats;

  // Observations are stamped when they happen and handed over in batches: one channel call per
  // BATCH_MS at most (each call crosses to the WebDriver BiDi side; one per event cost the
  // harness page's setup about 25 ms here). The harness's flush empties the queue at once.
  const BATCH_MS = 25;
  let queue = [];
  let timer = null;
  const flush = () => {
    timer = null;
    if (!queue.length) return;
    const batch = queue;
    queue = [];
    try {
      channel(JSON.stringify(batch));
    } catch (_) {
      // Nothing the page could see.
    }
  };
  const post = (pc, event) => {
    queue.push({ t: now(), realm, pc, event });
    if (timer === null) timer = setTimeout(flush, BATCH_MS);
  };
  const candidateType = (line) => {
    const m = / typ (\S+)/.exec(line || "");
    return m ? m[1] : "unknown";
  };
  const ufrag = (desc) => {
    const m = /^a=ice-ufrag:(\S+)/m.exec((desc && desc.sdp) || "");
    return m ? m[1] : undefined;
  };
  const errorText = (e) => (e && e.name ? e.name + ": " + e.message : String(e));
  const states = (id, pc) => {
    post(id, { type: "state", machine: "signalingState", state: pc.signalingState });
    post(id, { type: "state", machine: "iceGatheringState", state: pc.iceGatheringState });
    post(id, { type: "state", machine: "iceConnectionState", state: pc.iceConnectionState });
    post(id, { type: "state", machine: "connectionState", state: pc.connectionState });
  };

  const watchChannel = (id, dc) => {
    const open = () => post(id, { type: "data-channel-open", label: dc.label });
    // A channel the remote side created can be open before anyone listens.
    if (dc.readyState === "open") open();
    else addListener.call(dc, "open", open, { once: true });
  };

  // First decoded video frame: getStats inbound-rtp framesDecoded, polled every 20 ms from the
  // moment the connection is connected (so the polling never runs during the setup it would
  // disturb) until a frame is there, the connection closes, or 60 s pass.
  const watchFirstFrame = (id, pc) => {
    let started = false;
    const poll = async (until) => {
      if (pc.connectionState === "closed" || now() > until) return;
      try {
        const report = await nativeGetStats.call(pc);
        let frames = 0;
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
        });
        if (frames > 0) {
          post(id, { type: "first-video-frame" });
          return;
        }
      } catch (_) {
        return;
      }
      setTimeout(() => poll(until), 20);
    };
    const start = () => {
      if (started || pc.connectionState !== "connected") return;
      started = true;
      poll(now() + 60000);
    };
    addListener.call(pc, "connectionstatechange", start);
    start();
  };

  const observe = (pc) => {
    const id = ++created;
    ids.set(pc, id);
    pcs.set(id, pc);
    states(id, pc);
    const on = (type, f) => addListener.call(pc, type, f);
    on("signalingstatechange", () => post(id, { type: "state", machine: "signalingState", state: pc.signalingState }));
    on("icegatheringstatechange", () => post(id, { type: "state", machine: "iceGatheringState", state: pc.iceGatheringState }));
    on("iceconnectionstatechange", () => post(id, { type: "state", machine: "iceConnectionState", state: pc.iceConnectionState }));
    on("connectionstatechange", () => post(id, { type: "state", machine: "connectionState", state: pc.connectionState }));
    on("icecandidate", (e) => {
      if (e.candidate && e.candidate.candidate) {
        post(id, { type: "local-candidate", candidate_type: candidateType(e.candidate.candidate), candidate: e.candidate.candidate });
      }
    });
    on("icecandidateerror", (e) => post(id, {
      type: "ice-candidate-error", url: String(e.url || ""), error_code: Number(e.errorCode) || 0, error_text: String(e.errorText || ""),
    }));
    let video = false;
    on("track", (e) => {
      post(id, { type: "track-received", kind: e.track.kind });
      if (e.track.kind === "video" && !video) {
        video = true;
        watchFirstFrame(id, pc);
      }
    });
    on("datachannel", (e) => watchChannel(id, e.channel));
  };

  // Wraps a prototype method: `before` runs before the native call, `settled(id, pc, args,
  // error)` once its promise settles (error undefined on success).
  const wrap = (name, before, settled) => {
    const desc = Object.getOwnPropertyDescriptor(P, name);
    if (!desc || typeof desc.value !== "function") return;
    const native = desc.value;
    const wrapped = {
      [name](...args) {
        const id = ids.get(this);
        if (id !== undefined && before) {
          try {
            before(id, this, args);
          } catch (_) {
            // Never disturb the page.
          }
        }
        const result = native.apply(this, args);
        if (id !== undefined && settled && result && typeof result.then === "function") {
          result.then(
            () => settled(id, this, args, undefined),
            (e) => settled(id, this, args, e),
          );
        } else if (id !== undefined && settled) {
          settled(id, this, args, undefined, result);
        }
        return result;
      },
    }[name];
    Object.defineProperty(wrapped, "length", { value: native.length });
    Object.defineProperty(P, name, { ...desc, value: wrapped });
  };
  const call = (id, method, extra, e) => post(id, Object.assign({ type: "call", method }, extra, e === undefined ? {} : { error: errorText(e) }));

  wrap("createOffer", (id) => post(id, { type: "create-offer" }), (id, pc, args, e) => call(id, "createOffer", {}, e));
  wrap("createAnswer", null, (id, pc, args, e) => call(id, "createAnswer", {}, e));
  wrap("setLocalDescription", null, (id, pc, args, e) => {
    const d = e === undefined ? pc.localDescription : args[0];
    call(id, "setLocalDescription", { sdp_type: d && d.type, ice_ufrag: e === undefined ? ufrag(d) : undefined }, e);
  });
  wrap("setRemoteDescription", null, (id, pc, args, e) => {
    const d = e === undefined ? pc.remoteDescription : args[0];
    call(id, "setRemoteDescription", { sdp_type: d && d.type, ice_ufrag: e === undefined ? ufrag(d) : undefined }, e);
    if (e === undefined && d && d.type === "offer") post(id, { type: "offer-applied" });
    if (e === undefined && d && d.type === "answer") post(id, { type: "answer-applied" });
  });
  wrap("addIceCandidate", (id, pc, args) => {
    const c = args[0];
    if (c && c.candidate) post(id, { type: "remote-candidate", candidate_type: candidateType(c.candidate), candidate: c.candidate });
  }, (id, pc, args, e) => call(id, "addIceCandidate", {}, e));
  wrap("createDataChannel", null, (id, pc, args, e, dc) => {
    if (dc) watchChannel(id, dc);
  });
  wrap("close", (id) => post(id, { type: "closed" }), (id, pc) => states(id, pc));

  const Wrapped = new Proxy(Native, {
    construct(target, args, newTarget) {
      const pc = Reflect.construct(target, args, newTarget === Wrapped ? Native : newTarget);
      try {
        observe(pc);
      } catch (_) {
        // Never disturb the page.
      }
      return pc;
    },
  });
  const ctorDesc = Object.getOwnPropertyDescriptor(P, "constructor");
  Object.defineProperty(P, "constructor", { ...ctorDesc, value: Wrapped });
  const winDesc = Object.getOwnPropertyDescriptor(window, "RTCPeerConnection");
  Object.defineProperty(window, "RTCPeerConnection", { ...winDesc, value: Wrapped });
  if (window.webkitRTCPeerConnection === Native) {
    const d = Object.getOwnPropertyDescriptor(window, "webkitRTCPeerConnection");
    Object.defineProperty(window, "webkitRTCPeerConnection", { ...d, value: Wrapped });
  }

  // What the harness asks for (through WebDriver BiDi script.evaluate in this realm).
  const KEPT_STATS = ["candidate-pair", "local-candidate", "remote-candidate", "inbound-rtp", "outbound-rtp", "transport", "data-channel"];
  const get = (id) => {
    const pc = pcs.get(id);
    if (!pc) throw new Error("no RTCPeerConnection " + id + " in this document");
    return pc;
  };
  const api = {
    realm,
    flush() {
      if (timer !== null) clearTimeout(timer);
      flush();
      return 0;
    },
    async stats(id) {
      const out = [];
      (await nativeGetStats.call(get(id))).forEach((s) => {
        if (KEPT_STATS.includes(s.type)) out.push(s);
      });
      return JSON.stringify(out);
    },
    async media(id) {
      const out = {
        video_packets_received: 0, video_frames: 0, video_key_frames: 0, audio_packets_received: 0,
        video_frames_received: 0, audio_total_samples_received: 0,
      };
      (await nativeGetStats.call(get(id))).forEach((s) => {
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
      return JSON.stringify(out);
    },
    async selectedPair(id) {
      const stats = await nativeGetStats.call(get(id));
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        stats.forEach((s) => {
          if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded")) && !pair) pair = s;
        });
      }
      if (!pair) return "null";
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      return JSON.stringify({ local: local && local.candidateType, remote: remote && remote.candidateType });
    },
  };
  Object.defineProperty(window, "__rtcHarness", { value: Object.freeze(api), enumerable: false, configurable: false, writable: false });
}
