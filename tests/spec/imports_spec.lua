-- ctest: unit
-- The imports docs/architecture.md allows are the imports the code makes:
-- every require of a ctcli module, at the top or inside a function, is read
-- from the source and checked against the document's `imports` block.
local H = require("support.helpers")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- block(text, tag) -> the lines of the fenced block ```tag, or nil
local function block(text, tag)
  local body = text:match("\n```" .. tag:gsub("%-", "%%-") .. "\n(.-)```")
  if not body then return nil end
  local out = {}
  for line in body:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function rules(doc)
  local allowed, order = {}, {}
  for _, line in ipairs(assert(block(doc, "imports"), "docs/architecture.md has no ```imports block")) do
    local part, list = line:match("^(%w+):%s*(.*)$")
    assert(part, "unreadable imports line: " .. line)
    allowed[part] = {}
    order[#order + 1] = part
    for p in list:gmatch("%w+") do allowed[part][p] = true end
  end
  local exceptions = {}
  for _, line in ipairs(block(doc, "import-exceptions") or {}) do
    local from, to = line:match("^%s*([%w_.]+)%s*%->%s*([%w_.]+)")
    if from then exceptions[from .. " -> " .. to] = true end
  end
  return allowed, order, exceptions
end

-- The modules under lua/ctcli: name -> part (the folder; cli and main: top).
local function modules(src)
  local p = io.popen("cd '" .. src .. "/lua' && find ctcli -name '*.lua' | sort")
  local out = {}
  for file in p:lines() do
    local name = file:gsub("%.lua$", ""):gsub("/", ".")
    local folder = name:match("^ctcli%.([%w_]+)%.")
    out[name] = { file = file, part = folder or "top" }
  end
  p:close()
  return out
end

local function part_of(mods, name)
  if mods[name] then return mods[name].part end
  return name:match("^ctcli%.([%w_]+)%.") or "top"
end

describe("imports", function()
  local doc = read(H.src .. "/docs/architecture.md")
  local allowed, order, exceptions = rules(doc)
  local mods = modules(H.src)

  it("every module sits in a part the document names", function()
    local stray = {}
    for name, m in pairs(mods) do
      if not allowed[m.part] then stray[#stray + 1] = name .. " (" .. m.part .. ")" end
    end
    table.sort(stray)
    assert.are.same({}, stray)
    assert.is_true(#order >= 8)
  end)

  it("every require follows the document", function()
    local bad, used = {}, {}
    local count = 0
    for name, m in pairs(mods) do
      local text = read(H.src .. "/lua/" .. m.file)
      for target in text:gmatch("require%s*%(?%s*[\"'](ctcli%.[%w_.]+)[\"']") do
        count = count + 1
        local to = part_of(mods, target)
        -- "ctcli.commands." .. name: a prefix, checked by its part only
        -- a module generated at build time (schema_tables) is embedded, not in lua/
        assert(mods[target] or target:sub(-1) == "." or package.loaded[target] or pcall(require, target),
          name .. " requires " .. target .. ", which does not exist")
        local pair = name .. " -> " .. target
        if not allowed[m.part][to] then
          if exceptions[pair] then used[pair] = true
          else bad[#bad + 1] = pair .. " (" .. m.part .. " may not import " .. to .. ")" end
        end
      end
    end
    table.sort(bad)
    assert.are.same({}, bad)
    assert.is_true(count > 100) -- the pattern sees the requires at all
    local stale = {}
    for pair in pairs(exceptions) do if not used[pair] then stale[#stale + 1] = pair end end
    table.sort(stale)
    assert.are.same({}, stale)
  end)

  it("the check itself refuses a forbidden import", function()
    -- A document that forbids store -> runtime must find the ones the code
    -- has (the overlay of an app is runtime's, the layers it mounts store's).
    local strict = doc:gsub("\nruntime: runtime store model base\n", "\nruntime: runtime model base\n")
    local a = rules(strict)
    local found = false
    for _, m in pairs(mods) do
      if m.part == "runtime" then
        for target in read(H.src .. "/lua/" .. m.file):gmatch("require%s*%(?%s*[\"'](ctcli%.[%w_.]+)[\"']") do
          if not a.runtime[part_of(mods, target)] then found = true end
        end
      end
    end
    assert.is_true(found)
  end)
end)
