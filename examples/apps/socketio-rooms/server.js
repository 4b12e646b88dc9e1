// A 1:1 video-call app: a caller creates a room (/create?room=NAME), a callee joins it
// (/join?room=NAME). The server says `ready` to both once two are in, then relays `offer`,
// `answer` and `ice-candidate` to the other side of the room. ICE servers for the pages come
// from the ICE_SERVERS environment variable (a JSON array of RTCIceServer), default none.
const path = require("path");
const http = require("http");
const express = require("express");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";
const iceServers = JSON.parse(process.env.ICE_SERVERS || "[]");

const app = express();
const server = http.createServer(app);
const io = new Server(server);

const page = path.join(__dirname, "public", "call.html");
app.get("/", (_req, res) => res.send("socketio-rooms: open /create?room=NAME and /join?room=NAME"));
app.get("/create", (_req, res) => res.sendFile(page));
app.get("/join", (_req, res) => res.sendFile(page));
app.get("/config.json", (_req, res) => res.json({ iceServers }));
app.use(express.static(path.join(__dirname, "public")));

io.on("connection", (socket) => {
  socket.on("join", (room) => {
    const size = io.sockets.adapter.rooms.get(room)?.size || 0;
    if (size >= 2) {
      socket.emit("full", room);
      return;
    }
    socket.join(room);
    console.log(`${socket.id} joined ${room} (${size + 1} in)`);
    if (size + 1 === 2) io.to(room).emit("ready", room);
  });
  for (const type of ["offer", "answer", "ice-candidate"]) {
    socket.on(type, (payload, room) => socket.to(room).emit(type, payload, room));
  }
  socket.on("disconnecting", () => {
    for (const room of socket.rooms) socket.to(room).emit("bye", room);
  });
});

server.listen(port, host, () => console.log(`socketio-rooms listening on http://${host}:${port}`));
