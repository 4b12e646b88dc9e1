// A meeting app behind a login: POST /login {name} returns {token}, a JWT (HS256, secret from
// JWT_SECRET, 1 h); the Socket.IO connection is refused without a valid token in its `auth`.
// Rooms hold up to 4. A newcomer gets `ready` with the ids already in the room and offers to
// each; `offer`, `answer` and `ice-candidate` go to the peer named as their third argument, or
// to the rest of the room without one.
const path = require("path");
const http = require("http");
const express = require("express");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";
const secret = process.env.JWT_SECRET || "change-me";
const capacity = 4;

const app = express();
app.use(express.json());
const server = http.createServer(app);
const io = new Server(server);

app.post("/login", (req, res) => {
  const name = String((req.body && req.body.name) || "").trim();
  if (!name) return res.status(400).json({ error: "name required" });
  res.json({ token: jwt.sign({ sub: name }, secret, { algorithm: "HS256", expiresIn: "1h" }) });
});
app.get("/", (_req, res) => res.send("jwt-meeting: open /meeting?room=NAME&name=YOU"));
app.get("/meeting", (_req, res) => res.sendFile(path.join(__dirname, "public", "meeting.html")));
app.use(express.static(path.join(__dirname, "public")));

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (!token) return next(new Error("unauthorized: no token"));
  try {
    socket.data.user = jwt.verify(token, secret, { algorithms: ["HS256"] }).sub;
    next();
  } catch (e) {
    next(new Error("unauthorized: " + e.message));
  }
});

io.on("connection", (socket) => {
  console.log(`${socket.id} connected as ${socket.data.user}`);
  socket.on("join", (room) => {
    const present = [...(io.sockets.adapter.rooms.get(room) || [])];
    if (present.length >= capacity) {
      socket.emit("full", room);
      return;
    }
    socket.join(room);
    console.log(`${socket.data.user} joined ${room} (${present.length + 1} in)`);
    if (present.length > 0) socket.emit("ready", room, present);
  });
  for (const type of ["offer", "answer", "ice-candidate"]) {
    socket.on(type, (payload, room, to) => {
      if (to) io.to(to).emit(type, payload, room, socket.id);
      else socket.to(room).emit(type, payload, room, socket.id);
    });
  }
});

server.listen(port, host, () => console.log(`jwt-meeting listening on http://${host}:${port}`));
