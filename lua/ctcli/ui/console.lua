-- Output for people and machines: plain lines, tables, colors (honouring
-- NO_COLOR and --no-color), progress bars on a terminal, yes/no prompts.
local ct = require("ct")

local ui = {
  color = false,
  verbose = false,
  json = false,
  quiet_progress = false,
}

function ui.setup(opts)
  ui.json = opts.json or false
  ui.verbose = opts.verbose or false
  local no_color = opts.no_color or (os.getenv("NO_COLOR") or "") ~= ""
  ui.color = not no_color and ct.term.isatty(1)
  ui.progress_enabled = not ui.json and ct.term.isatty(2)
end

local codes = { red = 31, green = 32, yellow = 33, blue = 34, bold = 1, dim = 2 }

function ui.paint(color, s)
  if not ui.color then return s end
  return string.format("\27[%dm%s\27[0m", codes[color], s)
end

function ui.print(fmt, ...)
  io.stdout:write(select("#", ...) > 0 and fmt:format(...) or fmt, "\n")
end

function ui.info(fmt, ...)
  if ui.json then
    io.stderr:write(select("#", ...) > 0 and fmt:format(...) or fmt, "\n")
  else
    ui.print(fmt, ...)
  end
end

function ui.warn(fmt, ...)
  io.stderr:write("warning: ", select("#", ...) > 0 and fmt:format(...) or fmt, "\n")
end

function ui.debug(fmt, ...)
  if ui.verbose then
    io.stderr:write(select("#", ...) > 0 and fmt:format(...) or fmt, "\n")
  end
end

local function visible_len(s)
  return utf8.len((s:gsub("\27%[[%d;]*m", ""))) or #s
end

-- table(headers, rows): aligned columns; rows are arrays of strings.
function ui.table(headers, rows)
  local widths = {}
  for i, h in ipairs(headers) do widths[i] = visible_len(h) end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do
      widths[i] = math.max(widths[i] or 0, visible_len(tostring(c)))
    end
  end
  local function line(cells, paint)
    local parts = {}
    for i, c in ipairs(cells) do
      c = tostring(c)
      local padn = widths[i] - visible_len(c)
      parts[i] = (paint and ui.paint(paint, c) or c) .. (i < #cells and string.rep(" ", padn) or "")
    end
    ui.print(table.concat(parts, "  "))
  end
  line(headers, "bold")
  for _, r in ipairs(rows) do line(r) end
end

-- confirm(question) -> true only on y/yes; end of input is "no".
function ui.confirm(question)
  io.stdout:flush() -- what was printed before the question comes first
  io.stderr:write(question, " [y/N] ")
  local answer = ct.term.readline()
  if not answer then
    io.stderr:write("\n")
    return false
  end
  answer = answer:lower():gsub("^%s+", ""):gsub("%s+$", "")
  return answer == "y" or answer == "yes"
end

-- CANCELLED: the exit status of a command the operator did not confirm
-- (DESIGN §6: a "no", or a prompt with no terminal and no -y).
ui.CANCELLED = 3

-- ask(ctx, question, what) -> true | nil, msg, ui.CANCELLED. With -y it
-- does not ask; with no terminal on stdin there is nobody to answer, and
-- a destructive command never takes silence for a yes.
function ui.ask(ctx, question, what)
  if ctx.yes then return true end
  if not ct.term.isatty(0) then
    return nil, what .. " cancelled: no terminal to ask on, nothing changed (pass -y to proceed without asking)",
      ui.CANCELLED
  end
  if ui.confirm(question) then return true end
  return nil, what .. " cancelled; nothing changed (pass -y to proceed without asking)", ui.CANCELLED
end

-- width() -> the terminal's columns (stdout's, else stderr's), else
-- $COLUMNS, else 80.
function ui.width()
  local cols = ct.term.width() or math.tointeger(tonumber(os.getenv("COLUMNS") or ""))
  return cols and cols > 0 and cols <= 65535 and cols or 80
end

-- progress(label) -> object with :update(done, total) and :finish(); draws a
-- bar on stderr when it is a terminal, nothing otherwise.
function ui.progress(label)
  local p = { label = label, last = 0 }
  function p.update(_, done, total)
    if not ui.progress_enabled then return end
    local now = ct.time.monotonic()
    if now - p.last < 0.1 then return end
    p.last = now
    local width = math.max(10, math.min(40, ui.width() - #label - 30))
    local frac = (total and total > 0) and math.min(1, done / total) or 0
    local filled = math.floor(frac * width)
    io.stderr:write(string.format("\r%s [%s%s] %s", label, string.rep("#", filled),
      string.rep(".", width - filled), ui.bytes(done)))
  end
  function p.finish()
    if ui.progress_enabled and p.last > 0 then io.stderr:write("\r\27[K") end
  end
  return p
end

ui.bytes = require("ctcli.base.text").bytes

function ui.duration(s)
  if s < 60 then return string.format("%ds", math.floor(s)) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  if s < 86400 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  return string.format("%dd%02dh", s // 86400, (s % 86400) // 3600)
end

-- release_label(r) -> "name version" of a release (model, release.json or
-- a JSON summary of one); once when they are equal, as a legacy package's
-- are (both its releaseMeta.id).
function ui.release_label(r)
  -- A JSON summary's unknown field is null (a userdata), shown as unknown.
  local function known(v) if type(v) ~= "userdata" then return v end end
  local name, version = tostring(known(r.name) or "?"), known(r.version)
  if version == nil or version == name then return name end
  return name .. " " .. tostring(version)
end

-- image_label(image) -> how an app's image is shown: the reference it was
-- built as when the package gives one (a legacy version.json "image", a
-- manifest's image.name) with its short digest, else the short digest.
function ui.image_label(image)
  local short = type(image.digest) == "string" and image.digest:sub(8, 19) or "-"
  if type(image.name) == "string" and image.name ~= "" then return image.name .. " (" .. short .. ")" end
  return short
end

return ui
