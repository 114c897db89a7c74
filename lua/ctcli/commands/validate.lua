-- validate PKG|DIR|manifest.json: every problem at once, one line each.
local ct = require("ct")
local json = require("ctcli.base.json")
local lint = require("ctcli.services.lint")
local package = require("ctcli.model.package")
local pkgtool = require("ctcli.model.pkgtool")
local ui = require("ctcli.ui.console")

-- problems_of(target) -> problems | nil, msg
local function problems_of(target)
  local st = ct.fs.stat(target)
  if not st then return nil, target .. ": no such file or directory" end
  if st.type == "dir" then
    return (lint.check_dir(target))
  end
  local name = target:match("([^/]+)$")
  if name == "manifest.json" then
    return (lint.check_dir(target:match("^(.*)/[^/]+$") or "."))
  elseif name:match("%.json$") then
    local text, err = ct.fs.read(target)
    if not text then return nil, err end
    local _, problems = lint.check_text(text, name)
    return problems
  end
  local dir, cleanup = pkgtool.extract(target)
  if not dir then return nil, cleanup end
  local problems = lint.check_dir(dir, { files = true, name = package.package_name(target) })
  cleanup()
  return problems
end

return {
  summary = "Check a package, a package directory or a manifest: every problem at once",
  usage = "validate PKG|DIR|manifest.json",
  description = "Reports every problem, one line each as 'file: json.path: message': the\n" ..
    "manifest's schema (unknown keys with a hint), depends_on naming existing apps\n" ..
    "without cycles, configs/data/logs paths, each image layout, ref and digest,\n" ..
    "hook files (compiled as text, never run; known hook points only), migration\n" ..
    "ids, runtime binaries, and in a packed package every file against its digest.\n" ..
    "Exit status 1 when there is any problem; --json prints them as a list.",
  min_args = 1, max_args = 1,
  run = function(ctx)
    local target = ctx.args[1]
    local problems, err = problems_of(target)
    if not problems then return nil, err end
    if ctx.json then
      local list = json.array({})
      for i, p in ipairs(problems) do
        list[i] = { file = p.file or "manifest.json", path = p.path or "", message = p.message }
      end
      json.print({ target = target, valid = #problems == 0, problems = list })
    else
      for _, line in ipairs(lint.format(problems)) do ui.print("%s", line) end
      if #problems == 0 then
        ui.print("%s: valid", target)
      else
        io.stderr:write(string.format("ctcli: %s: %d problem%s\n", target, #problems, #problems == 1 and "" or "s"))
      end
    end
    return #problems == 0 and 0 or 1
  end,
}
