-- luacheck: the Lua layer keeps everything local.
std = "lua54"
max_line_length = 140
files["tests/**"] = { std = "+busted" }
