// First start of the MongoDB container only (docker-entrypoint-initdb.d, run by mongosh as the
// root user): the playlist service's own login, allowed to read and write its database only.
const name = process.env.MONGO_PLAYLIST_DB || "playlist";
const password = process.env.MONGO_PLAYLIST_PASSWORD;
if (!password) {
  throw new Error("MONGO_PLAYLIST_PASSWORD is not set");
}
db.getSiblingDB(name).createUser({
  user: "playlist",
  pwd: password,
  roles: [{ role: "readWrite", db: name }],
});
