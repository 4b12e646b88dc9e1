// The classic signaling-and-video-calling server: plain JSON over one WebSocket. A client logs
// in with a name ({type: "login", name}); offers, answers and candidates name their target
// ({type: "offer", offer, name: "bob"}) and reach only that user, with `name` set to the
// sender. Malformed messages get {type: "error"}; unknown targets too. Pages are served from
// public/ on the same port.
const fs = require("fs");
const http = require("http");
const path = require("path");
const { WebSocketServer } = require("ws");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";
const types = { ".html": "text/html", ".js": "text/javascript" };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const file = url.pathname === "/chat" ? "chat.html" : url.pathname.slice(1) || "index.html";
  const full = path.join(__dirname, "public", path.normalize(file).replace(/^(\.\.[/\\])+/, ""));
  fs.readFile(full, (err, data) => {
    if (err) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": types[path.extname(full)] || "application/octet-stream" }).end(data);
  });
});

const users = new Map();
const wss = new WebSocketServer({ server, path: "/ws" });
wss.on("connection", (ws) => {
  let me = null;
  const send = (to, msg) => to.readyState === to.OPEN && to.send(JSON.stringify(msg));
  ws.on("message", (raw) => {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return send(ws, { type: "error", message: "not JSON" });
    }
    if (msg.type === "login") {
      if (!msg.name || users.has(msg.name)) return send(ws, { type: "login", success: false });
      me = msg.name;
      users.set(me, ws);
      console.log(`${me} logged in`);
      return send(ws, { type: "login", success: true });
    }
    if (!me) return send(ws, { type: "error", message: "log in first" });
    if (["offer", "answer", "candidate"].includes(msg.type)) {
      const target = users.get(msg.name);
      if (!target) return send(ws, { type: "error", message: `no user ${msg.name}` });
      return send(target, { ...msg, name: me });
    }
    send(ws, { type: "error", message: `unknown type ${msg.type}` });
  });
  ws.on("close", () => {
    if (me && users.get(me) === ws) users.delete(me);
  });
});

server.listen(port, host, () => console.log(`ws-named listening on http://${host}:${port}`));
