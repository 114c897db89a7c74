-- The apps' dependency graph (depends_on): the cycles the validator
-- reports, and the start order and levels of the release model.
local json = require("ctcli.base.json")

local G = {}

-- cycles(graph, names_in_order) -> the strongly connected components
-- (Tarjan) of graph[name] = {dep, ...} of more than one app, each a set of
-- names, visiting names in declared order.
function G.cycles(graph, names_in_order)
  local index, low, on_stack, stack, found = {}, {}, {}, {}, {}
  local counter = 0
  local function visit(v)
    counter = counter + 1
    index[v], low[v] = counter, counter
    stack[#stack + 1] = v
    on_stack[v] = true
    for _, w in ipairs(graph[v] or {}) do
      if not index[w] then
        visit(w)
        low[v] = math.min(low[v], low[w])
      elseif on_stack[w] then
        low[v] = math.min(low[v], index[w])
      end
    end
    if low[v] == index[v] then
      local comp = {}
      repeat
        local w = table.remove(stack)
        on_stack[w] = nil
        comp[w] = true
      until w == v
      if next(comp, next(comp)) ~= nil then found[#found + 1] = comp end
    end
  end
  for _, v in ipairs(names_in_order) do
    if not index[v] then visit(v) end
  end
  return found
end

-- cycle_path(graph, comp, start) -> one cycle through start inside a
-- component, {start, ..., start}, by breadth-first search.
function G.cycle_path(graph, comp, start)
  local prev, queue, head = { [start] = false }, { start }, 1
  while head <= #queue do
    local v = queue[head]
    head = head + 1
    for _, w in ipairs(graph[v] or {}) do
      if w == start then
        local path = { start }
        local x = v
        while x ~= start do
          table.insert(path, 2, x)
          x = prev[x]
        end
        path[#path + 1] = start
        return path
      end
      if comp[w] and prev[w] == nil then
        prev[w] = v
        queue[#queue + 1] = w
      end
    end
  end
end

-- dependency_order(apps) -> order, levels: a stable topological order (among
-- apps free to start, the one declared first) and the dependency levels.
function G.dependency_order(apps)
  local index, remaining, dependents = {}, {}, {}
  for i, a in ipairs(apps) do
    index[a.name] = i
    remaining[a.name] = #a.depends_on
    dependents[a.name] = {}
  end
  for _, a in ipairs(apps) do
    for _, dep in ipairs(a.depends_on) do
      table.insert(dependents[dep], a.name)
    end
  end
  local ready, order, level = {}, json.array({}), {}
  for _, a in ipairs(apps) do
    if remaining[a.name] == 0 then ready[#ready + 1] = a.name end
  end
  while #ready > 0 do
    table.sort(ready, function(x, y) return index[x] < index[y] end)
    local n = table.remove(ready, 1)
    order[#order + 1] = n
    for _, m in ipairs(dependents[n]) do
      remaining[m] = remaining[m] - 1
      if remaining[m] == 0 then ready[#ready + 1] = m end
    end
  end
  local levels = json.array({})
  for _, n in ipairs(order) do
    local lv = 1
    for _, dep in ipairs(apps[index[n]].depends_on) do
      lv = math.max(lv, level[dep] + 1)
    end
    level[n] = lv
  end
  for _, a in ipairs(apps) do
    local lv = level[a.name]
    for l = #levels + 1, lv do levels[l] = json.array({}) end
    table.insert(levels[lv], a.name)
  end
  return order, levels
end

return G
