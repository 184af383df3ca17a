// Runs once when the container starts with an empty data volume (docker-entrypoint-initdb.d).
// Creates the tracker's own user with only what it needs on its own database:
// readWrite (documents, indexes) + dbAdmin (collMod for $jsonSchema validators, stats).
// Passwords come from the environment (mongo/.env), never from this file.
const dbName = process.env.TRACKER_DB_NAME || "vimtrack";
const user = process.env.TRACKER_DB_USER || "vimtrack";
const password = process.env.TRACKER_DB_PASSWORD;
if (!password) {
  throw new Error("TRACKER_DB_PASSWORD is not set");
}
const target = db.getSiblingDB(dbName);
if (target.getUser(user) === null) {
  target.createUser({
    user: user,
    pwd: password,
    roles: [
      { role: "readWrite", db: dbName },
      { role: "dbAdmin", db: dbName },
    ],
  });
  print(`created user ${user} on ${dbName}`);
}
