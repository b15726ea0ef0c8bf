package postgres

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Never edit one that has shipped: append a new one. They
// follow the SQLite store's schema (same tables, same versions); "user" is a
// reserved word here, so those columns are called username. Times are Unix
// nanoseconds, as on SQLite.
var migrations = []string{
	// 1: users, keys, envs, targets, grants.
	`
CREATE TABLE users (
	name          TEXT COLLATE "C" PRIMARY KEY,
	password_hash TEXT NOT NULL DEFAULT '',
	created_at    BIGINT NOT NULL
);
CREATE TABLE keys (
	username       TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	fingerprint    TEXT COLLATE "C" NOT NULL,
	authorized_key TEXT NOT NULL,
	comment        TEXT NOT NULL DEFAULT '',
	created_at     BIGINT NOT NULL,
	PRIMARY KEY (username, fingerprint)
);
CREATE TABLE envs (
	name       TEXT COLLATE "C" PRIMARY KEY,
	created_at BIGINT NOT NULL
);
CREATE TABLE targets (
	name       TEXT COLLATE "C" PRIMARY KEY,
	env        TEXT COLLATE "C" NOT NULL REFERENCES envs(name) ON DELETE RESTRICT,
	kind       TEXT NOT NULL,
	login      TEXT NOT NULL DEFAULT '',
	spec       TEXT NOT NULL DEFAULT '{}',
	created_at BIGINT NOT NULL
);
CREATE INDEX targets_env ON targets(env);
CREATE TABLE grants (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	username   TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	env        TEXT COLLATE "C" REFERENCES envs(name) ON DELETE CASCADE,
	target     TEXT COLLATE "C" REFERENCES targets(name) ON DELETE CASCADE,
	login      TEXT NOT NULL DEFAULT '',
	forwarding BOOLEAN NOT NULL DEFAULT FALSE,
	created_at BIGINT NOT NULL,
	CHECK ((env IS NULL) <> (target IS NULL))
);
CREATE INDEX grants_user ON grants(username);
CREATE INDEX grants_env ON grants(env);
CREATE INDEX grants_target ON grants(target);
`,
	// 2: TOTP enrolments, per env/target TOTP modes, bans.
	`
CREATE TABLE totp (
	username   TEXT COLLATE "C" PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
	secret     TEXT NOT NULL,
	active     BOOLEAN NOT NULL DEFAULT FALSE,
	last_step  BIGINT NOT NULL DEFAULT 0,
	pending    TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
CREATE TABLE totp_modes (
	env    TEXT COLLATE "C" UNIQUE REFERENCES envs(name) ON DELETE CASCADE,
	target TEXT COLLATE "C" UNIQUE REFERENCES targets(name) ON DELETE CASCADE,
	mode   TEXT NOT NULL,
	CHECK ((env IS NULL) <> (target IS NULL))
);
CREATE TABLE bans (
	source     TEXT COLLATE "C" PRIMARY KEY,
	until      BIGINT NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	count      INTEGER NOT NULL DEFAULT 1,
	created_at BIGINT NOT NULL
);
`,
	// 3: live sessions.
	`
CREATE TABLE live_sessions (
	id             TEXT COLLATE "C" PRIMARY KEY,
	gate_id        TEXT COLLATE "C" NOT NULL,
	username       TEXT NOT NULL,
	target         TEXT NOT NULL,
	login          TEXT NOT NULL DEFAULT '',
	started_at     BIGINT NOT NULL,
	bytes_in       BIGINT NOT NULL DEFAULT 0,
	bytes_out      BIGINT NOT NULL DEFAULT 0,
	updated_at     BIGINT NOT NULL,
	kill_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX live_sessions_gate ON live_sessions(gate_id, kill_requested);
`,
	// 4: account menu and username grammar: target ids, aliases and primary
	// marker, user uids and default targets, env groups. Ids and uids come
	// from identity columns, so they are never reused; rows are created by
	// triggers when a target or user is added.
	`
CREATE TABLE target_info (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	target      TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES targets(name) ON DELETE CASCADE,
	is_primary  BOOLEAN NOT NULL DEFAULT FALSE,
	description TEXT NOT NULL DEFAULT ''
);
INSERT INTO target_info(target) SELECT name FROM targets ORDER BY created_at, name;
CREATE FUNCTION target_info_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO target_info(target) VALUES (NEW.name);
	RETURN NULL;
END $$;
CREATE TRIGGER target_info_add AFTER INSERT ON targets FOR EACH ROW EXECUTE FUNCTION target_info_add();
CREATE TABLE target_aliases (
	alias  TEXT COLLATE "C" PRIMARY KEY,
	target TEXT COLLATE "C" NOT NULL REFERENCES targets(name) ON DELETE CASCADE
);
CREATE INDEX target_aliases_target ON target_aliases(target);
CREATE FUNCTION targets_not_alias() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM target_aliases WHERE alias = NEW.name) THEN
		RAISE EXCEPTION 'target name is taken by an alias' USING ERRCODE = 'unique_violation';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER targets_not_alias BEFORE INSERT ON targets FOR EACH ROW EXECUTE FUNCTION targets_not_alias();
CREATE TABLE user_info (
	uid            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	username       TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES users(name) ON DELETE CASCADE,
	default_target TEXT COLLATE "C" REFERENCES targets(name) ON DELETE SET NULL
);
INSERT INTO user_info(username) SELECT name FROM users ORDER BY created_at, name;
CREATE FUNCTION user_info_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO user_info(username) VALUES (NEW.name);
	RETURN NULL;
END $$;
CREATE TRIGGER user_info_add AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION user_info_add();
CREATE TABLE env_groups (
	env TEXT COLLATE "C" PRIMARY KEY REFERENCES envs(name) ON DELETE CASCADE,
	grp TEXT NOT NULL
);
`,
	// 5: the gates sharing the store and their heartbeats.
	`
CREATE TABLE gates (
	id         TEXT COLLATE "C" PRIMARY KEY,
	address    TEXT NOT NULL DEFAULT '',
	version    TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL,
	heartbeat  BIGINT NOT NULL,
	sessions   INTEGER NOT NULL DEFAULT 0
);
`,
	// login state shared by the gates (TOTP grace windows, per-account
	// failure counters) and the registry of warm containers.
	sharedStateMigration,
	// 7: per-grant controls (gate.Controls as JSON).
	`ALTER TABLE grants ADD COLUMN controls TEXT NOT NULL DEFAULT '{}';`,
	// 8: single sign-on: managed grants and reuse windows (sso.go).
	ssoMigration,
	// 9: the key each live session logged in with (`key remove` ends them).
	`ALTER TABLE live_sessions ADD COLUMN key_fp TEXT NOT NULL DEFAULT '';`,
	// 10: where a grant's local forwards may go (gate.Grant.ForwardTo as a
	// JSON array; '' for anywhere). A gate older than this migration refuses
	// the store rather than ignore the column and forward anywhere.
	`ALTER TABLE grants ADD COLUMN forward_to TEXT NOT NULL DEFAULT '';`,
}
