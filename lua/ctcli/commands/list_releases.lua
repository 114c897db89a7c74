-- list-releases: kept releases and backups, newest first.
local ct = require("ct")
local backup = require("ctcli.store.backup")
local goroot = require("ctcli.store.goroot")
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local ui = require("ctcli.ui.console")

return {
  summary = "List the kept releases, the staged one and the backups, newest first",
  usage = "list-releases",
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local target = ct.fs.readlink(ctx.paths.current)
    local cur_id = target and target:match("([^/]+)$")
    local doc = { root = ctx.root, releases = json.array(), backups = json.array() }
    local rels, err = release.list(ctx.paths)
    if not rels then return nil, err end
    local backups, berr = backup.list(ctx.paths)
    if not backups then return nil, berr end
    for _, r in ipairs(rels) do
      local entry = json.release(r)
      entry.created, entry.current, entry.previous = r.created, r.id == cur_id, r.previous or json.null
      entry.adopted = true
      doc.releases[#doc.releases + 1] = entry
    end
    -- A staged release ('ctcli stage'): listed apart, never a kept one.
    local srec = require("ctcli.services.staged").current(ctx.paths)
    local srel = srec and require("ctcli.services.staged").load(ctx.paths, srec)
    doc.staged = srel and { id = srel.id, name = srel.name, version = srel.version, created = srec.staged,
      against = srec.against, current_matches = srec.against == cur_id, package = srec.package.name } or json.null
    if goroot.present(ctx.paths) then
      -- A root the Go ctcli made, not adopted yet: its release as it is.
      local cur = release.current(ctx.paths)
      if cur then
        local entry = json.release(cur)
        entry.created, entry.current, entry.previous, entry.adopted = cur.created, true, json.null, false
        doc.releases[#doc.releases + 1] = entry
      end
    end
    for _, b in ipairs(backups) do
      if b.format == goroot.FORMAT and b.data == nil then b.data = goroot.has_data(b.path) end
      doc.backups[#doc.backups + 1] = json.backup(b)
    end
    if ctx.json then
      json.print(doc)
      return true
    end
    if #doc.releases == 0 and #doc.backups == 0 and not srel then
      ui.print("no releases and no backups in %s", ctx.root)
      return true
    end
    local rows = {}
    for _, r in ipairs(doc.releases) do
      rows[#rows + 1] = { r.current and "*" or "", "release", r.id, ui.release_label(r), r.created }
    end
    if srel then
      local s = doc.staged
      rows[#rows + 1] = { "", s.current_matches and ("staged, against " .. s.against)
        or ("staged against " .. s.against .. ", not current: re-stage"), s.id, ui.release_label(s), s.created }
    end
    for _, b in ipairs(doc.backups) do
      local kind = b.data == true and "backup" or "backup (no data)"
      if b.reason ~= json.null then kind = kind .. ", " .. tostring(b.reason) end
      local rel = b.release ~= json.null and b.release or {}
      local version = rel.version and rel.version ~= json.null and tostring(rel.version) or "-"
      if b.backup_format == goroot.FORMAT then
        kind = kind .. ", Go ctcli"
        version = rel.id and ("release " .. tostring(rel.id)) or "-"
      end
      rows[#rows + 1] = { "", kind, b.path:match("[^/]+$"), version, tostring(b.created) }
    end
    ui.table({ "", "KIND", "ID", "VERSION", "CREATED" }, rows)
    return true
  end,
}
