-- ctest: unit
-- The release manifest: validation (every problem, with its path), the
-- release model, the legacy conversion, and the schema kept in step.
local json = require("ctcli.base.json")
local manifest = require("ctcli.model.manifest")

local SRC = os.getenv("CTCLI_SOURCE_DIR") or "."
local DIGEST = "sha256:" .. string.rep("ab", 32)

local function read(path)
  local f = assert(io.open(SRC .. "/" .. path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

-- A small valid manifest, fresh each time so a case may change it.
local function base()
  return {
    manifest_version = 1,
    release = { name = "demo", version = "1.2.0" },
    apps = json.array({
      {
        name = "db", version = "1.0",
        image = { layout = "images/db", ref = "db" },
        data = { "/var/lib/db" },
      },
      {
        name = "web", version = "1.2.0",
        image = { layout = "images/web", ref = "web", digest = DIGEST },
        entrypoint = { "/bin/sh", "/app/run.sh" },
        configs = { "/etc/web/app.conf" },
        data = { "/var/lib/web" },
        logs = "/var/log/web",
        depends_on = { "db" },
        healthcheck = { command = { "/bin/true" } },
      },
    }),
  }
end

-- lines(problems) -> sorted "path: message" strings
local function lines(problems)
  local out = {}
  for _, p in ipairs(problems) do out[#out + 1] = p.path .. ": " .. p.message end
  table.sort(out)
  return out
end

local function paths(problems)
  local out = {}
  for _, p in ipairs(problems) do out[#out + 1] = p.path end
  table.sort(out)
  return out
end

local function find(problems, path, text)
  for _, p in ipairs(problems) do
    if p.path == path and (not text or p.message:find(text, 1, true)) then return p end
  end
  return nil
end

local function assert_problem(problems, path, text)
  assert(find(problems, path, text), string.format(
    "no problem at %q with %q among:\n  %s", path, tostring(text), table.concat(lines(problems), "\n  ")))
end

describe("manifest", function()

  describe("the examples", function()
    for _, name in ipairs({ "demo", "full" }) do
      it(name .. ".json validates with no problem and normalizes", function()
        local doc, problems = manifest.parse(read("manifests/examples/" .. name .. ".json"), name .. ".json")
        assert.same({}, problems and lines(problems) or {})
        assert.is_table(doc)
        local model = assert(manifest.normalize(doc))
        assert.equal("demo", model.name)
        assert.equal(#doc.apps, #model.apps)
      end)
    end

    it("full.json uses every key the validator knows", function()
      local doc = json.decode(read("manifests/examples/full.json"))
      local used = {}
      for _, app in ipairs(doc.apps) do
        for k in pairs(app) do used[k] = true end
      end
      for _, k in ipairs(manifest.KNOWN_KEYS.app) do
        assert(used[k], "full.json uses no app key " .. k)
      end
      for _, k in ipairs(manifest.KNOWN_KEYS.manifest) do assert.is_not_nil(doc[k], k) end
      for _, k in ipairs(manifest.KNOWN_KEYS.release) do assert.is_not_nil(doc.release[k], k) end
    end)
  end)

  describe("validate", function()
    it("finds no problem in a valid manifest", function()
      assert.same({}, manifest.validate(base()))
    end)

    it("reports every planted mistake with its exact path", function()
      local doc = base()
      doc.manifest_version = 2                                   -- 1
      doc.release.version = 1.2                                  -- 2
      doc.release.time = "2026-11-01 12:00:00"                   -- 3
      local db, web = doc.apps[1], doc.apps[2]
      db.image.digest = "sha256:XYZ"                             -- 4
      db.stop_signal = "SIGFOO"                                  -- 5
      web.configs = { "etc/web/app.conf" }                       -- 6
      web.logs = "/var/lib/web/logs"                             -- 7 (inside data)
      web.depends_on = { "db", "cache" }                         -- 8
      web.healthcheck = { command = "true", retries = 0 }        -- 9, 10
      web.env = { ["1BAD"] = "x", GOOD = 5 }                     -- 11, 12
      web.network = "bridge"                                     -- 13
      web.resources = { memory = "lots", cpus = 0 }              -- 14, 15
      web.hooks = "../hooks/web.lua"                             -- 16
      web.helthcheck = {}                                        -- 17
      doc.files = { ["/etc/passwd"] = DIGEST }                   -- 18
      local problems = manifest.validate(doc, "manifest.json")
      assert.same({
        "apps.db.image.digest",
        "apps.db.stop_signal",
        "apps.web.configs",
        "apps.web.depends_on",
        "apps.web.env.1BAD",
        "apps.web.env.GOOD",
        "apps.web.healthcheck.command",
        "apps.web.healthcheck.retries",
        "apps.web.helthcheck",
        "apps.web.hooks",
        "apps.web.logs",
        "apps.web.network",
        "apps.web.resources.cpus",
        "apps.web.resources.memory",
        "files[\"/etc/passwd\"]",
        "manifest_version",
        "release.time",
        "release.version",
      }, paths(problems))
      assert_problem(problems, "apps.web.configs", "expected an array of absolute paths")
      assert_problem(problems, "apps.web.depends_on", "unknown app 'cache'")
      assert_problem(problems, "apps.web.logs", 'logs "/var/lib/web/logs" is inside data "/var/lib/web"')
      assert_problem(problems, "apps.web.helthcheck", "did you mean 'healthcheck'?")
      for _, p in ipairs(problems) do assert.equal("manifest.json", p.file) end
    end)

    it("names an unknown key and suggests the close known one", function()
      local doc = base()
      doc.apps[2].entrypiont = { "/bin/sh" }
      doc.release.nmae = "x"
      doc.relase = {}
      doc.apps[1].logsFolder = "/var/log/db"
      doc.apps[1].zzzzzz = 1
      local problems = manifest.validate(doc)
      assert.same({
        "apps.db.logsFolder: unknown key 'logsFolder' (did you mean 'logs'?)",
        "apps.db.zzzzzz: unknown key 'zzzzzz'",
        "apps.web.entrypiont: unknown key 'entrypiont' (did you mean 'entrypoint'?)",
        "relase: unknown key 'relase' (did you mean 'release'?)",
        "release.nmae: unknown key 'nmae' (did you mean 'name'?)",
      }, lines(problems))
    end)

    it("lets keys starting with x- through everywhere keys are fixed", function()
      local doc = base()
      doc["x-top"] = { anything = true }
      doc.release["x-ticket"] = "OPS-1"
      doc.runtime = { runc = "bin/runc", ["x-note"] = 1 }
      local web = doc.apps[2]
      web["x-owner"] = "team"
      web.image["x-source"] = "registry"
      web.healthcheck["x-why"] = "because"
      web.resources = { pids = 10, ["x-burst"] = true }
      assert.same({}, manifest.validate(doc))
    end)

    -- Each rule: change the valid base, expect exactly that problem.
    local function app(doc, name)
      for _, a in ipairs(doc.apps) do if a.name == name then return a end end
    end
    local rules = {
      { "manifest_version is required", function(d) d.manifest_version = nil end, "manifest_version", "missing required key" },
      { "manifest_version is the integer 1", function(d) d.manifest_version = "1" end, "manifest_version", "expected the integer 1" },
      { "release is required", function(d) d.release = nil end, "release", "missing required key" },
      { "release.name is required", function(d) d.release.name = nil end, "release.name", "missing required key" },
      { "release.version is required", function(d) d.release.version = nil end, "release.version", "missing required key" },
      { "release.name is not empty", function(d) d.release.name = "" end, "release.name", "expected a non-empty string" },
      { "release.commit is a string", function(d) d.release.commit = 123 end, "release.commit", "put the value in quotes" },
      { "release.time is RFC 3339 UTC", function(d) d.release.time = "2026-11-01T12:00:00+02:00" end, "release.time", "RFC 3339 UTC" },
      { "release.time is a real date", function(d) d.release.time = "2026-02-30T12:00:00Z" end, "release.time", "RFC 3339 UTC" },
      { "release.meta is an object", function(d) d.release.meta = { 1, 2 } end, "release.meta", "expected an object" },
      { "runtime.runc is relative", function(d) d.runtime = { runc = "/usr/bin/runc" } end, "runtime.runc", "not an absolute one" },
      { "runtime.umoci has no ..", function(d) d.runtime = { umoci = "bin/../../umoci" } end, "runtime.umoci", "'..'" },
      { "apps has at least one app", function(d) d.apps = json.array({}) end, "apps", "expected a non-empty array of apps" },
      { "an app name is required", function(d) d.apps[2].name = nil end, "apps[1].name", "missing required key" },
      { "an app name matches the pattern", function(d) d.apps[2].name = "Web" end, "apps[1].name", "invalid app name \"Web\"" },
      { "an app name has at most 63 characters", function(d) d.apps[2].name = string.rep("a", 64) end, "apps[1].name", "at most 63" },
      { "app names are unique", function(d) d.apps[2].name = "db"; d.apps[2].depends_on = nil end,
        "apps[1].name", "duplicate app name 'db' (also apps.db)" },
      { "an app version is required", function(d) app(d, "db").version = nil end, "apps.db.version", "missing required key" },
      { "an app version is a string", function(d) app(d, "db").version = 1 end, "apps.db.version", "put the value in quotes" },
      { "image is required", function(d) app(d, "db").image = nil end, "apps.db.image", "missing required key" },
      { "image.layout is required", function(d) app(d, "db").image.layout = nil end, "apps.db.image.layout", "missing required key" },
      { "image.ref is required", function(d) app(d, "db").image.ref = nil end, "apps.db.image.ref", "missing required key" },
      { "image.layout is relative", function(d) app(d, "db").image.layout = "/images/db" end, "apps.db.image.layout", "relative path" },
      { "image.layout has no ..", function(d) app(d, "db").image.layout = "images/../../db" end, "apps.db.image.layout", "'..'" },
      { "image.digest is sha256:<hex>", function(d) app(d, "db").image.digest = "sha256:" .. string.rep("A", 64) end,
        "apps.db.image.digest", "64 lowercase hex" },
      { "entrypoint is an array of strings", function(d) app(d, "web").entrypoint = "/bin/sh run.sh" end,
        "apps.web.entrypoint", "expected an array of strings" },
      { "entrypoint holds only strings", function(d) app(d, "web").entrypoint = { "/bin/sh", 5 } end,
        "apps.web.entrypoint", "expected an array of strings" },
      { "entrypoint is not empty", function(d) app(d, "web").entrypoint = json.array({}) end, "apps.web.entrypoint", "must not be empty" },
      { "env is an object", function(d) app(d, "web").env = { "A=1" } end, "apps.web.env", "expected an object" },
      { "env names are variable names", function(d) app(d, "web").env = { ["A-B"] = "1" } end,
        "apps.web.env.A-B", "invalid variable name" },
      { "env names have no spaces", function(d) app(d, "web").env = { ["A B"] = "1" } end,
        "apps.web.env[\"A B\"]", "invalid variable name" },
      { "env values are strings", function(d) app(d, "web").env = { PORT = 8080 } end, "apps.web.env.PORT", "expected a string" },
      { "workdir is absolute", function(d) app(d, "web").workdir = "app" end, "apps.web.workdir", "expected an absolute path" },
      { "configs is an array", function(d) app(d, "web").configs = "/etc/web/app.conf" end,
        "apps.web.configs", "expected an array of absolute paths" },
      { "configs are absolute", function(d) app(d, "web").configs = { "/etc/a", "etc/b" } end,
        "apps.web.configs", "expected an array of absolute paths" },
      { "configs have no ..", function(d) app(d, "web").configs = { "/etc/../root/x" } end, "apps.web.configs", "'..'" },
      { "configs are unique", function(d) app(d, "web").configs = { "/etc/a", "/etc/a/" } end,
        "apps.web.configs", "\"/etc/a/\" is listed twice" },
      { "data are absolute", function(d) app(d, "db").data = { 5 } end, "apps.db.data", "expected an array of absolute paths" },
      { "data is not /", function(d) app(d, "db").data = { "/" } end, "apps.db.data", "must not be /" },
      { "data is not the same as a config", function(d) app(d, "web").data = { "/etc/web/app.conf" } end,
        "apps.web.data", "is the same path as configs" },
      { "data does not contain a config", function(d) app(d, "web").data = { "/etc" } end,
        "apps.web.data", "data \"/etc\" contains configs \"/etc/web/app.conf\"" },
      { "configs do not nest", function(d) app(d, "web").configs = { "/etc/web", "/etc/web/app.conf" } end,
        "apps.web.configs", "is inside configs \"/etc/web\"" },
      { "logs is absolute", function(d) app(d, "web").logs = "var/log" end, "apps.web.logs", "expected an absolute path" },
      { "logs is not inside data", function(d) app(d, "web").logs = "/var/lib/web/log" end, "apps.web.logs", "is inside data" },
      { "depends_on is an array", function(d) app(d, "web").depends_on = "db" end,
        "apps.web.depends_on", "expected an array of app names" },
      { "depends_on names existing apps", function(d) app(d, "web").depends_on = { "dbb" } end,
        "apps.web.depends_on", "unknown app 'dbb' (did you mean 'db'?)" },
      { "depends_on does not name itself", function(d) app(d, "web").depends_on = { "web" } end,
        "apps.web.depends_on", "cannot depend on itself" },
      { "depends_on has no duplicates", function(d) app(d, "web").depends_on = { "db", "db" } end,
        "apps.web.depends_on", "'db' is listed twice" },
      { "depends_on has no cycle", function(d) app(d, "db").depends_on = { "web" } end,
        "apps.db.depends_on", "dependency cycle: db -> web -> db" },
      { "healthcheck is an object", function(d) app(d, "web").healthcheck = { "/bin/true" } end,
        "apps.web.healthcheck", "expected an object" },
      { "healthcheck.command is required", function(d) app(d, "web").healthcheck = { interval = 1 } end,
        "apps.web.healthcheck.command", "missing required key" },
      { "healthcheck.command is an array of strings", function(d) app(d, "web").healthcheck.command = { true } end,
        "apps.web.healthcheck.command", "expected an array of strings" },
      { "healthcheck.interval is positive", function(d) app(d, "web").healthcheck.interval = 0 end,
        "apps.web.healthcheck.interval", "expected a positive number" },
      { "healthcheck.timeout is a number", function(d) app(d, "web").healthcheck.timeout = "5s" end,
        "apps.web.healthcheck.timeout", "expected a positive number" },
      { "healthcheck.retries is an integer", function(d) app(d, "web").healthcheck.retries = 1.5 end,
        "apps.web.healthcheck.retries", "expected an integer >= 1" },
      { "healthcheck.start_period is >= 0", function(d) app(d, "web").healthcheck.start_period = -1 end,
        "apps.web.healthcheck.start_period", "expected a number >= 0" },
      { "stop_signal is a known signal", function(d) app(d, "web").stop_signal = "SIGSTOP" end,
        "apps.web.stop_signal", "expected one of SIGTERM" },
      { "stop_signal is a string", function(d) app(d, "web").stop_signal = 15 end, "apps.web.stop_signal", "expected one of" },
      { "stop_timeout is >= 0", function(d) app(d, "web").stop_timeout = -5 end, "apps.web.stop_timeout", "expected a number >= 0" },
      { "hooks is relative", function(d) app(d, "web").hooks = "/hooks/web.lua" end, "apps.web.hooks", "not an absolute one" },
      { "hooks has no ..", function(d) app(d, "web").hooks = "hooks/../../x.lua" end, "apps.web.hooks", "'..'" },
      { "hook_timeout is positive", function(d) app(d, "web").hook_timeout = 0 end, "apps.web.hook_timeout", "expected a positive number" },
      { "migrations is an array", function(d) app(d, "web").migrations = "0001" end,
        "apps.web.migrations", "expected an array of migration ids" },
      { "migrations are non-empty strings", function(d) app(d, "web").migrations = { "0001", "" } end,
        "apps.web.migrations[1]", "expected a non-empty string" },
      { "migrations are unique", function(d) app(d, "web").migrations = { "0001", "0001" } end,
        "apps.web.migrations", "\"0001\" is listed twice" },
      { "network is host or isolated", function(d) app(d, "web").network = "bridge" end,
        "apps.web.network", 'expected "host" or "isolated"' },
      { "read_only_rootfs is a boolean", function(d) app(d, "web").read_only_rootfs = "yes" end,
        "apps.web.read_only_rootfs", "expected true or false" },
      { "journald is a boolean", function(d) app(d, "web").journald = "yes" end,
        "apps.web.journald", "expected true or false" },
      { "resources is an object", function(d) app(d, "web").resources = "big" end, "apps.web.resources", "expected an object" },
      { "resources.memory has a known unit", function(d) app(d, "web").resources = { memory = "256MB" } end,
        "apps.web.resources.memory", "expected a size like" },
      { "resources.memory bytes are positive", function(d) app(d, "web").resources = { memory = 0 } end,
        "apps.web.resources.memory", "expected a size like" },
      { "resources.cpus is positive", function(d) app(d, "web").resources = { cpus = -1 } end,
        "apps.web.resources.cpus", "expected a positive number" },
      { "resources.pids is an integer >= 1", function(d) app(d, "web").resources = { pids = 0 } end,
        "apps.web.resources.pids", "expected an integer >= 1" },
      { "commit is a non-empty string", function(d) app(d, "web").commit = "" end, "apps.web.commit", "expected a non-empty string" },
      { "built_at is a string", function(d) app(d, "web").built_at = 1700000000 end, "apps.web.built_at", "expected a non-empty string" },
      { "files is an object", function(d) d.files = { "a" } end, "files", "expected an object of package paths" },
      { "files keys are relative paths", function(d) d.files = { ["a/../../b"] = DIGEST } end, "files[\"a/../../b\"]", "'..'" },
      { "files values are digests", function(d) d.files = { ["images/web/index.json"] = "md5:abc" } end,
        "files[\"images/web/index.json\"]", "sha256" },
    }
    for _, case in ipairs(rules) do
      local what, change, path, text = case[1], case[2], case[3], case[4]
      it(what, function()
        local doc = base()
        change(doc)
        local problems = manifest.validate(doc)
        assert_problem(problems, path, text)
        assert.equal(1, #problems, table.concat(lines(problems), "\n"))
      end)
    end

    it("accepts stop signals without the SIG prefix", function()
      local doc = base()
      doc.apps[2].stop_signal = "QUIT"
      doc.apps[1].stop_signal = "SIGKILL"
      assert.same({}, manifest.validate(doc))
    end)

    it("accepts memory as a size with a unit or as bytes", function()
      for _, m in ipairs({ "512K", "256M", "1G", "2T", "1048576", 1048576 }) do
        local doc = base()
        doc.apps[2].resources = { memory = m }
        assert.same({}, manifest.validate(doc), tostring(m))
      end
    end)

    it("reports an app whose name is invalid by its index", function()
      local doc = base()
      doc.apps[2].name = 42
      doc.apps[2].logs = "relative"
      local problems = manifest.validate(doc)
      assert_problem(problems, "apps[1].name", "expected a string")
      assert_problem(problems, "apps[1].logs", "expected an absolute path")
    end)

    it("reports a cycle through several apps once", function()
      local doc = base()
      doc.apps[#doc.apps + 1] = { name = "cache", version = "1", image = { layout = "c", ref = "c" }, depends_on = { "web" } }
      doc.apps[1].depends_on = { "cache" }
      local problems = manifest.validate(doc)
      assert.same({ "apps.db.depends_on: dependency cycle: db -> cache -> web -> db" }, lines(problems))
    end)
  end)

  describe("garbage shapes", function()
    local function one_app(fields)
      local a = { name = "a", version = "1", image = { layout = "a", ref = "a" } }
      for k, v in pairs(fields or {}) do a[k] = v end
      return a
    end
    local function doc_with(fields)
      local d = { manifest_version = 1, release = { name = "r", version = "1" }, apps = { one_app() } }
      for k, v in pairs(fields) do d[k] = v end
      return d
    end
    local every_field_wrong = {
      manifest_version = true, release = { name = {}, version = {} }, runtime = "x", files = 3,
      apps = { one_app({
        image = { layout = 1, ref = {}, digest = 2 }, entrypoint = {}, env = 1, workdir = 1,
        configs = 1, data = { {} }, logs = {}, depends_on = { {} }, healthcheck = 1, stop_signal = {},
        stop_timeout = "x", hooks = 1, hook_timeout = {}, migrations = { 1 }, network = 1,
        resources = { memory = {}, cpus = "1", pids = "1" }, commit = {}, built_at = false,
      }) },
    }
    local shapes = {
      { "a top-level array", json.array({ 1, 2 }), "", "expected a JSON object at the top level" },
      { "nil", nil, "", "expected a JSON object at the top level" },
      { "a number", 5, "", "expected a JSON object at the top level" },
      { "a string", "manifest", "", "expected a JSON object at the top level" },
      { "release = 5", doc_with({ release = 5 }), "release", "expected an object" },
      { "apps = \"x\"", doc_with({ apps = "x" }), "apps", "expected a non-empty array of apps" },
      { "apps = {1, 2}", doc_with({ apps = { 1, 2 } }), "apps[1]", "expected an object" },
      { "apps as an object", doc_with({ apps = { web = {} } }), "apps", "expected a non-empty array of apps" },
      { "an app as an array", doc_with({ apps = { { "web" } } }), "apps[0]", "expected an object" },
      { "image as a string", doc_with({ apps = { one_app({ image = "a:latest" }) } }), "apps.a.image", "expected an object" },
      { "every field the wrong type", every_field_wrong, "apps.a.resources.pids", "expected an integer >= 1" },
      { "a mixed table", doc_with({ release = { name = "r", version = "1", [1] = "x" } }), "release", "expected an object" },
    }
    for _, case in ipairs(shapes) do
      it("gives problems, never an error, for " .. case[1], function()
        local ok, problems = pcall(manifest.validate, case[2])
        assert.is_true(ok, tostring(problems))
        assert_problem(problems, case[3], case[4])
        local ok2, model, errs = pcall(manifest.normalize, case[2])
        assert.is_true(ok2, tostring(model))
        assert.is_nil(model)
        assert.is_table(errs)
      end)
    end

    it("never raises whatever value any known key holds", function()
      local garbage = { true, 0, -1, 1.5, 1e300, 0 / 0, math.huge, "", "x", "/", "..", {}, { 1 }, { "a" },
        { a = 1 }, { {} }, { [1] = "a", b = 2 }, json.array({}) }
      local targets = {
        { "manifest", function(d) return d end },
        { "release", function(d) return d.release end },
        { "app", function(d) return d.apps[2] end },
        { "image", function(d) return d.apps[2].image end },
        { "healthcheck", function(d) return d.apps[2].healthcheck end },
      }
      local count = 0
      for _, target in ipairs(targets) do
        for _, key in ipairs(manifest.KNOWN_KEYS[target[1]]) do
          for _, value in ipairs(garbage) do
            local doc = base()
            target[2](doc)[key] = value
            local ok, problems = pcall(manifest.validate, doc)
            assert(ok, target[1] .. "." .. key .. ": " .. tostring(problems))
            local ok2, err = pcall(manifest.normalize, doc)
            assert(ok2, target[1] .. "." .. key .. ": " .. tostring(err))
            local legacy_meta = { packageVersion = value, releaseMeta = value }
            local ok3, err3 = pcall(manifest.from_legacy, legacy_meta, {
              { name = "web", package_config = { [key] = value, healthcheck = { command = value, waitFor = value } },
                version = { imageTag = value, imageSha = value, builtAt = value } } })
            assert(ok3, "legacy " .. key .. ": " .. tostring(err3))
            count = count + 1
          end
        end
      end
      assert.is_true(count > 500)
    end)

    it("reports each wrong-typed field of an app", function()
      local problems = manifest.validate(every_field_wrong)
      assert.is_true(#problems >= 25, table.concat(lines(problems), "\n"))
    end)
  end)

  describe("parse", function()
    it("reports a JSON syntax error with its line and column", function()
      local doc, problems = manifest.parse('{\n  "manifest_version": 1,\n  "release": {"name": "x",}\n}', "manifest.json")
      assert.is_nil(doc)
      assert.equal(1, #problems)
      assert.equal("", problems[1].path)
      assert.matches("^line 3, column %d+: ", problems[1].message)
      assert.matches("^manifest.json: line 3, column %d+: ", manifest.format_problems(problems)[1])
    end)

    it("returns the problems of a well-formed but invalid manifest", function()
      local doc, problems = manifest.parse('{"manifest_version": 1, "release": {"name": "x"}, "apps": []}')
      assert.is_nil(doc)
      assert.same({ "apps: expected a non-empty array of apps", "release.version: missing required key" }, lines(problems))
    end)

    it("handles null as a document", function()
      local doc, problems = manifest.parse("null")
      assert.is_nil(doc)
      assert_problem(problems, "", "expected a JSON object")
    end)
  end)

  describe("format_problems", function()
    it("prefixes the file and the path", function()
      local problems = {
        { path = "apps.web.configs", message = "expected an array of absolute paths" },
        { path = "", message = "line 1, column 2: oops" },
        { path = "entrypoint", message = "expected an array of strings", file = "package/apps/web/package-config.json" },
      }
      assert.same({
        "manifest.json: apps.web.configs: expected an array of absolute paths",
        "manifest.json: line 1, column 2: oops",
        "package/apps/web/package-config.json: entrypoint: expected an array of strings",
      }, manifest.format_problems(problems))
      assert.equal("pkg/manifest.json: apps.web.configs: expected an array of absolute paths",
        manifest.format_problems(problems, "pkg/manifest.json")[1])
    end)
  end)

  describe("normalize", function()
    local function doc_with(apps)
      local d = { manifest_version = 1, release = { name = "r", version = "1" }, apps = json.array({}) }
      for i, a in ipairs(apps) do
        d.apps[i] = { name = a[1], version = "1", image = { layout = "images/" .. a[1], ref = a[1] }, depends_on = a[2] }
      end
      return d
    end

    it("orders apps by dependency, keeping the declared order among independents", function()
      local model = assert(manifest.normalize(doc_with({
        { "web", { "api" } }, { "api", { "db", "cache" } }, { "db" }, { "cache" }, { "worker", { "db" } }, { "docs" },
      })))
      assert.same({ "db", "cache", "api", "web", "worker", "docs" }, model.order)
      assert.same({ { "db", "cache", "docs" }, { "api", "worker" }, { "web" } }, model.levels)
      local names = {}
      for i, a in ipairs(model.apps) do names[i] = a.name end
      assert.same(model.order, names)
    end)

    it("keeps the declared order when nothing depends on anything", function()
      local model = assert(manifest.normalize(doc_with({ { "c" }, { "a" }, { "b" } })))
      assert.same({ "c", "a", "b" }, model.order)
      assert.same({ { "c", "a", "b" } }, model.levels)
    end)

    it("fills defaults and marks arrays so they encode as []", function()
      local model = assert(manifest.normalize(doc_with({ { "web" } })))
      local app = model.apps[1]
      assert.equal("SIGTERM", app.stop_signal)
      assert.equal(10, app.stop_timeout)
      assert.equal("host", app.network)
      assert.is_false(app.read_only_rootfs)
      assert.same({}, app.env)
      assert.is_nil(app.entrypoint)
      assert.is_nil(app.healthcheck)
      assert.is_nil(app.resources)
      assert.is_nil(app.migrations)
      local text = json.encode(app)
      assert.truthy(text:find('"configs":[]', 1, true))
      assert.truthy(text:find('"data":[]', 1, true))
      assert.truthy(text:find('"depends_on":[]', 1, true))
      assert.truthy(text:find('"env":{}', 1, true))
      assert.equal("[]", json.encode(json.array({})))
    end)

    it("normalizes signals, memory, paths and healthcheck defaults, and drops x- keys", function()
      local doc = base()
      local web = doc.apps[2]
      web.stop_signal = "HUP"
      web.resources = { memory = "256M", cpus = 0.5, ["x-note"] = 1 }
      web.configs = { "/etc/web//app.conf/" }
      web.healthcheck = { command = { "/bin/true" }, retries = 5 }
      web["x-owner"] = "me"
      local model = assert(manifest.normalize(doc))
      local app = model.apps[2]
      assert.equal("web", app.name)
      assert.equal("SIGHUP", app.stop_signal)
      assert.same({ memory = 268435456, cpus = 0.5 }, app.resources)
      assert.equal("integer", math.type(app.resources.memory))
      assert.same({ "/etc/web/app.conf" }, app.configs)
      assert.same({ command = { "/bin/true" }, retries = 5, interval = 2, timeout = 10, start_period = 0 }, app.healthcheck)
      assert.is_nil(app["x-owner"])
      assert.same({ "db" }, app.depends_on)
      assert.same({ layout = "images/web", ref = "web", digest = DIGEST }, app.image)
      assert.equal(1, model.manifest_version)
      assert.same({}, model.runtime)
    end)

    it("keeps journald as an opt-in only; ctcli.json overrides it and names the socket", function()
      local monitor = require("ctcli.runtime.runc").monitor
      local rootconf = require("ctcli.store.rootconf")
      local doc = base()
      doc.apps[2].journald = true
      doc.apps[1].journald = false
      local model = assert(manifest.normalize(doc))
      local db, web = model.apps[1], model.apps[2]
      assert.is_nil(db.journald)
      assert.is_true(web.journald)
      local rel = { format = "manifest" }
      local p = monitor.policy(rel, web, { apps = {} })
      assert.is_true(p.journald)
      assert.equal("/run/systemd/journal/socket", p.journal_socket)
      assert.is_false(monitor.policy(rel, db, { apps = {} }).journald)
      local conf = { apps = { web = { journald = false }, db = { journald = true } },
        supervision = { journal_socket = "/tmp/j.sock" } }
      assert.is_true(rootconf.validate(conf))
      assert.is_false(monitor.policy(rel, web, conf).journald)
      p = monitor.policy(rel, db, conf)
      assert.is_true(p.journald)
      assert.equal("/tmp/j.sock", p.journal_socket)
      local ok, err = rootconf.validate({ supervision = { journal_socket = "j.sock" } })
      assert.is_nil(ok)
      assert.matches("supervision%.journal_socket: expected an absolute socket path", err)
      ok, err = rootconf.validate({ apps = { web = { journald = "yes" } } })
      assert.is_nil(ok)
      assert.matches("apps%.web%.journald: expected true or false", err)
    end)

    it("does not share tables with the document", function()
      local doc = base()
      local model = assert(manifest.normalize(doc))
      model.apps[2].data[1] = "/changed"
      assert.equal("/var/lib/web", doc.apps[2].data[1])
    end)

    it("refuses an invalid document", function()
      local doc = base()
      doc.apps[1].depends_on = { "web" }
      local model, problems = manifest.normalize(doc)
      assert.is_nil(model)
      assert_problem(problems, "apps.db.depends_on", "dependency cycle")
    end)
  end)

  describe("from_legacy", function()
    local SHA = "sha256:" .. string.rep("0f", 32)
    local function legacy()
      local meta = { packageVersion = 1, releaseMeta = { id = "opbot-2023-05-01", baseRelease = "",
        createdAt = "2023-05-01T10:00:00Z", appVersions = {} } }
      local apps = {
        {
          name = "web",
          package_config = {
            baseImage = "registry/web:{{ imageTag }}",
            entrypoint = { "/bin/sh", "/app/run.sh" },
            configs = { "/config/config.json", "/bin/NLog.config" },
            data = { "/runtime/data" },
            logsFolder = "/runtime/logs",
            healthcheck = { command = { "curl", "http://localhost:8181/healthz" }, waitFor = 3 },
          },
          version = { appName = "web", image = "registry.example/web:2.4.1", imageTag = "2.4.1", imageSha = SHA,
            commit = "abc123", builtAt = "2023-05-01T10:00:00.5+03:00" },
          layout = "package/apps/web/skopeo",
          hooks = "package/apps/web/hooks.lua",
        },
        {
          name = "bot",
          package_config = { logsFolder = "" },
          version = { appName = "bot", imageSha = "not-a-digest", builtAt = "0001-01-01T00:00:00Z" },
          layout = "package/apps/bot/skopeo",
        },
      }
      return meta, apps
    end

    it("maps a legacy package to a valid manifest", function()
      local meta, apps = legacy()
      local doc, problems = manifest.from_legacy(meta, apps)
      assert.same({}, problems and manifest.format_problems(problems) or {})
      assert.same({}, manifest.validate(doc))
      -- Named by releaseMeta.id, which is also its version (it has no other).
      assert.same({ name = "opbot-2023-05-01", version = "opbot-2023-05-01", meta = meta.releaseMeta }, doc.release)
      assert.same({ runc = "package/runc.amd64", umoci = "package/umoci.amd64" }, doc.runtime)
      local web, bot = doc.apps[1], doc.apps[2]
      assert.same({
        name = "web", version = "2.4.1",
        image = { layout = "package/apps/web/skopeo", ref = "web", digest = SHA, name = "registry.example/web:2.4.1" },
        entrypoint = { "/bin/sh", "/app/run.sh" },
        configs = { "/config/config.json", "/bin/NLog.config" },
        data = { "/runtime/data" },
        logs = "/runtime/logs",
        healthcheck = { command = { "curl", "http://localhost:8181/healthz" },
          start_period = 3, legacy_wait_for = 3, retries = 1, interval = 1, timeout = 30 },
        hooks = "package/apps/web/hooks.lua",
        commit = "abc123", built_at = "2023-05-01T10:00:00.5+03:00",
      }, web)
      assert.same({ name = "bot", version = "opbot-2023-05-01",
        image = { layout = "package/apps/bot/skopeo", ref = "bot" } }, bot)
      local model = assert(manifest.normalize(doc))
      assert.same({ "web", "bot" }, model.order)
      assert.equal("registry.example/web:2.4.1", model.apps[1].image.name)
    end)

    it("reads packageVersion as the format version: absent is 1, a string or an unknown format is refused", function()
      local meta, apps = legacy()
      meta.packageVersion = nil
      assert.equal("opbot-2023-05-01", assert(manifest.from_legacy(meta, apps)).release.name)
      for _, case in ipairs({
        { "2024.1", "expected an integer >= 1 %(the version of the package format, absent = 1; the release is "
          .. "named by releaseMeta.id%), got \"2024.1\"" },
        { 0, "expected an integer >= 1" }, { 1.5, "expected an integer >= 1" },
        { 2, "package format 2 is not one this ctcli reads %(it reads format 1, the Go ctcli's%)" },
      }) do
        meta.packageVersion = case[1]
        local doc, problems = manifest.from_legacy(meta, apps)
        assert.is_nil(doc)
        assert.equal(1, #problems)
        assert.matches("^meta.json: packageVersion: " .. case[2], manifest.format_problems(problems)[1])
      end
    end)

    it("accepts a package without meta.json or releaseMeta.id, as the Go tool did, named by its file", function()
      local _, apps = legacy()
      local doc = assert(manifest.from_legacy(nil, apps, nil, "opbot-release-42"))
      assert.same({ name = "opbot-release-42", version = "opbot-release-42" }, doc.release)
      doc = assert(manifest.from_legacy({ releaseMeta = { baseRelease = "" } }, apps))
      assert.equal("legacy", doc.release.name)
      assert.same({ baseRelease = "" }, doc.release.meta)
      local bad, problems = manifest.from_legacy({ releaseMeta = { id = 42 } }, apps)
      assert.is_nil(bad)
      assert.same({ "meta.json: releaseMeta.id: expected a string (the release's name)" },
        manifest.format_problems(problems))
    end)

    it("lists only the runtime binaries the package holds", function()
      local meta, apps = legacy()
      local doc = assert(manifest.from_legacy(meta, apps, { ["package/umoci.amd64"] = true }))
      assert.same({ umoci = "package/umoci.amd64" }, doc.runtime)
      meta.has_runc, meta.has_umoci = true, false
      doc = assert(manifest.from_legacy(meta, apps))
      assert.same({ runc = "package/runc.amd64" }, doc.runtime)
    end)

    it("reports a bad entrypoint with the package-config.json file name", function()
      local meta, apps = legacy()
      apps[1].package_config.entrypoint = "/bin/sh /app/run.sh"
      local doc, problems = manifest.from_legacy(meta, apps)
      assert.is_nil(doc)
      assert.same({ "package/apps/web/package-config.json: entrypoint: expected an array of strings" },
        manifest.format_problems(problems))
      assert.equal("package/apps/web/package-config.json", problems[1].file)
    end)

    it("points manifest rules back at the legacy field", function()
      local meta, apps = legacy()
      apps[1].package_config.configs = { "config/config.json" }
      apps[1].package_config.logsFolder = "/runtime/data/logs"
      apps[1].package_config.healthcheck.waitFor = -1
      apps[2].version.imageTag = 3
      meta.packageVersion = { 1 }
      apps[1].version.image = 5
      local doc, problems = manifest.from_legacy(meta, apps)
      assert.is_nil(doc)
      local got = manifest.format_problems(problems)
      table.sort(got)
      assert.same({
        "meta.json: packageVersion: expected an integer >= 1 (the version of the package format, absent = 1;"
          .. " the release is named by releaseMeta.id), got a list",
        "package/apps/bot/version.json: imageTag: expected a string",
        "package/apps/web/package-config.json: configs: expected an array of absolute paths",
        "package/apps/web/package-config.json: healthcheck.waitFor: expected a whole number of seconds >= 0",
        "package/apps/web/package-config.json: logsFolder: logs \"/runtime/data/logs\" is inside data \"/runtime/data\""
          .. " (configs, data and logs must not overlap)",
        "package/apps/web/version.json: image: expected a string",
      }, got)
    end)

    it("reports a missing or malformed file, never raises", function()
      local meta, apps = legacy()
      apps[1].package_config = nil
      apps[2].version = "garbage"
      local doc, problems = manifest.from_legacy(meta, apps)
      assert.is_nil(doc)
      local got = manifest.format_problems(problems)
      table.sort(got)
      assert.same({
        "package/apps/bot/version.json: expected a JSON object",
        "package/apps/web/package-config.json: missing (every app needs a package-config.json)",
      }, got)
      for _, bad in ipairs({ { nil, nil }, { 5, {} }, { {}, "x" }, { { packageVersion = 1 }, { 1, 2 } } }) do
        local ok, d, errs = pcall(manifest.from_legacy, bad[1], bad[2])
        assert.is_true(ok, tostring(d))
        assert.is_nil(d)
        assert.is_true(#errs >= 1)
      end
    end)

    it("reports an app directory name that is not a valid app name", function()
      local meta, apps = legacy()
      apps[2].name = "Bot"
      local _, problems = manifest.from_legacy(meta, apps)
      assert.same({ "package/apps/Bot: invalid app name \"Bot\" (lowercase letters, digits, '.', '_', '-';"
        .. " starting with a letter or digit; at most 63 characters)" }, manifest.format_problems(problems))
    end)
  end)

  describe("the JSON Schema", function()
    local schema = assert(json.decode(read("manifests/release.schema.json")))

    local function sorted(list)
      local out = {}
      for i, v in ipairs(list) do out[i] = v end
      table.sort(out)
      return out
    end

    it("is a 2020-12 schema", function()
      assert.equal("https://json-schema.org/draft/2020-12/schema", schema["$schema"])
      assert.is_string(schema["$id"])
    end)

    it("requires what the validator requires", function()
      local function missing_paths(doc)
        local out = {}
        for _, p in ipairs(manifest.validate(doc)) do
          if p.message == "missing required key" then out[#out + 1] = p.path end
        end
        table.sort(out)
        return out
      end
      assert.same({ "apps", "manifest_version", "release" }, missing_paths({}))
      assert.same(sorted(schema.required), { "apps", "manifest_version", "release" })
      assert.same(sorted(schema.properties.release.required), { "name", "version" })
      assert.same(sorted(schema["$defs"].app.required), { "image", "name", "version" })
      assert.same(sorted(schema["$defs"].image.required), { "layout", "ref" })
      local d = { manifest_version = 1, release = {}, apps = { { image = {} } } }
      assert.same({ "apps[0].image.layout", "apps[0].image.ref", "apps[0].name", "apps[0].version",
        "release.name", "release.version" }, missing_paths(d))
    end)

    it("describes every property", function()
      local missing = {}
      local function walk(node, path)
        if type(node) ~= "table" then return end
        for name, prop in pairs(node.properties or {}) do
          if type(prop.description) ~= "string" or prop.description == "" then
            missing[#missing + 1] = path .. "." .. name
          end
          walk(prop, path .. "." .. name)
        end
        for name, def in pairs(node["$defs"] or {}) do walk(def, path .. ".$defs." .. name) end
      end
      walk(schema, "")
      assert.same({}, missing)
    end)

    it("lists the same signals and network modes", function()
      local enum = schema["$defs"].app.properties.stop_signal.enum
      local expect = {}
      for _, s in ipairs(manifest.SIGNALS) do
        expect[#expect + 1] = s
        expect[#expect + 1] = s:sub(4)
      end
      assert.same(sorted(expect), sorted(enum))
      assert.same(sorted(manifest.NETWORKS), sorted(schema["$defs"].app.properties.network.enum))
    end)
  end)
end)
