-- luacheck configuration: Lua 5.4, no globals; specs get busted's.
std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
exclude_files = { "build", "node_modules" }
