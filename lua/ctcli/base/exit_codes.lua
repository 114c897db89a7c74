-- The exit statuses as `ctcli help exit-codes` and docs/exit-codes.md tell
-- them; the numbers are cli.EXIT's.
local M = {}

M.ROWS = {
  { 0, "done (for exec: the command's own status, whatever it is)" },
  { 1, "failed or refused; the error line says what and what to do next" },
  { 2, "usage: an unknown command or option, a bad or missing value, wrong arguments; nothing ran" },
  { 3, "cancelled: \"no\" at a prompt, or a prompt with no terminal and no -y; nothing changed" },
  { 70, "internal error: a bug in ctcli (run with -v for the traceback, and report it)" },
  { 125, "exec: ctcli or runc could not run the command (also a bug during exec)" },
  { 126, "exec: the command is not executable (a directory, no x bit, a bad binary)" },
  { 127, "exec: the command is not found (not on the app's PATH, or no such file)" },
}

function M.text()
  local out = { "Exit statuses of ctcli:", "" }
  for _, r in ipairs(M.ROWS) do out[#out + 1] = string.format("  %3d  %s", r[1], r[2]) end
  out[#out + 1] = ""
  out[#out + 1] = "exec passes the status of the command it ran (0-255); 125, 126 and 127 are"
  out[#out + 1] = "docker's, so an app's own 125-127 reads the same. See docs/exit-codes.md."
  return table.concat(out, "\n")
end

return M
