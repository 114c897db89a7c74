-- The journal (state/journal.json): a changing command writes what it is
-- about to do before doing it, step by step, so the next command can finish
-- or undo an interrupted one. CTCLI_FAULT=<command>:<step> makes ctcli kill
-- itself with SIGKILL when it reaches that step; CTCLI_FAULT=<command>:<step>:fail
-- makes the step fail instead, so the command takes its own error path
-- (the crash tests use both).
local ct = require("ct")
local json = require("ctcli.base.json")
local report = require("ctcli.base.report")
local statefile = require("ctcli.base.statefile")
local clock = require("ctcli.base.clock")

local M = {}
local Journal = {}
Journal.__index = Journal

local function save(j)
  return ct.fs.write_atomic(j.path, json.encode(j.doc, true) .. "\n")
end

-- fault(command, step) -> true | nil, msg: kills ctcli, or returns the
-- injected failure, when CTCLI_FAULT names this step.
local function fault(command, step)
  local f = os.getenv("CTCLI_FAULT")
  if not f then return true end
  -- <command>:<step>:pause holds the command there (the tests run other
  -- commands meanwhile): it creates $CTCLI_FAULT_RESUME.waiting, then waits
  -- (up to 2 minutes) for $CTCLI_FAULT_RESUME to exist.
  local held = f:match("^(.*):pause$")
  if held then
    local resume = os.getenv("CTCLI_FAULT_RESUME")
    if held == command .. ":" .. step and resume then
      ct.fs.write_atomic(resume .. ".waiting", "")
      local deadline = ct.time.monotonic() + 120
      while not ct.fs.exists(resume) and ct.time.monotonic() < deadline do ct.time.sleep(0.02) end
    end
    return true
  end
  local where = f:match("^(.*):fail$")
  local fail = where ~= nil
  where = where or f
  if where ~= command .. ":" .. step then return true end
  if fail then return nil, "injected failure at " .. where end
  ct.proc.kill(ct.proc.getpid(), ct.proc.signals.KILL)
  ct.time.sleep(10)
  return true
end

-- begin(paths, command, data, steps [, rep]) -> journal | nil, msg. steps:
-- the step names the command declares (its `steps`), or nil for a command
-- that declares none (its steps are not checked and take only injected
-- kills). rep: the reporter (ctx.report) told when each step begins.
function M.begin(paths, command, data, steps, rep)
  local j = setmetatable({
    path = paths.journal, steps = steps, report = report.of(rep),
    doc = { command = command, pid = ct.proc.getpid(), started = clock.iso(),
            steps = json.array(), data = data or {} },
  }, Journal)
  local ok, err = save(j)
  if not ok then return nil, "cannot write the journal: " .. err end
  return j
end

-- step(name) -> true | nil, msg: records that the step named is about to
-- run (and the one before it is done). It fails when the journal cannot be
-- written (a full disk) or CTCLI_FAULT injects a failure there; every
-- caller takes its error path then.
function Journal:step(name)
  -- A step a command does not declare is a bug: the crash tests enumerate the declared ones.
  if self.steps then
    local known = false
    for _, s in ipairs(self.steps) do if s == name then known = true end end
    if not known then error("journal: step '" .. name .. "' is not declared by " .. self.doc.command) end
  end
  local steps = self.doc.steps
  if #steps > 0 then steps[#steps].done = true end
  steps[#steps + 1] = { name = name, done = false }
  -- -v: when each step begins (bench/staged.sh reads these).
  if self.report then self.report.detail("step %s:%s at %.6f", self.doc.command, name, ct.time.monotonic()) end
  local ok, err = save(self)
  if not ok then return nil, "cannot write the journal: " .. tostring(err) end
  -- The kill comes after the journal says the step began: the hardest case.
  local went, why = fault(self.doc.command, name)
  -- Only the commands that declare their steps check what step returns: an
  -- injected failure anywhere else would pass unseen, so it is refused.
  if not went and not self.steps then
    error("CTCLI_FAULT: " .. self.doc.command .. " takes no injected failures (only kills)")
  end
  return went, why
end

-- set(key, value) -> true | nil, msg: adds to what recovery needs to know
-- (a failed write also fails the next step, which writes it all again).
function Journal:set(key, value)
  self.doc.data[key] = value
  local ok, err = save(self)
  if not ok then return nil, "cannot write the journal: " .. tostring(err) end
  return true
end

function Journal:reached(name)
  for _, s in ipairs(self.doc.steps) do
    if s.name == name then return true end
  end
  return false
end

-- finish() -> true | nil, msg: the command completed (or was undone); the
-- journal goes. An injected failure keeps it, as a journal that cannot be
-- removed would stay: the command's work is done, 'ctcli recover' closes it.
function Journal:finish()
  self.closed = true
  local ok, err = fault(self.doc.command, "finish")
  if not ok then return nil, err .. "; run 'ctcli recover'" end
  ct.fs.unlink(self.path)
  ct.fs.fsync(self.path:match("^(.*)/[^/]+$"))
  if self.report then self.report.detail("step %s:end at %.6f", self.doc.command, ct.time.monotonic()) end
  return true
end

-- keep(): the journal stays when the command leaves, for 'ctcli recover'
-- (a way back that could not begin or could not finish).
function Journal:keep()
  self.closed = true
end

-- A command holds its journal as `local j <close> = journal.begin(...)`:
-- leaving that scope finishes it, so no exit path forgets to, unless the
-- command finished it itself (to report how that went) or kept it. A Lua
-- error leaves it too: what the steps left is unknown, recovery reads it.
function Journal:__close(err)
  if self.closed or err ~= nil then return end
  self:finish()
end

-- pending(paths) -> the journal of an interrupted command, or nil | nil,
-- msg when it cannot be read: some command was interrupted, and what it
-- left half done is unknown, so nothing may go on as if there were none.
function M.pending(paths)
  local doc, err = statefile.read(paths, paths.journal, statefile.JOURNAL, statefile.HINT.journal)
  if not doc then return nil, err end
  return setmetatable({ path = paths.journal, doc = doc }, Journal)
end

-- discard(paths) -> true | nil, msg: drops the journal unread (the
-- operator's way out of a broken one, after checking the root).
function M.discard(paths)
  local ok, err = ct.fs.unlink(paths.journal)
  if not ok and ct.fs.lstat(paths.journal) then return nil, "cannot remove " .. paths.journal .. ": " .. tostring(err) end
  ct.fs.fsync(paths.state)
  return true
end

M.fault = fault

return M
