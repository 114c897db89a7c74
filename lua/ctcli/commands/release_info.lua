-- release-info: the current release and its apps.
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local runtools = require("ctcli.runtime.tools")
local ui = require("ctcli.ui.console")

return {
  summary = "Show the current release: id, version, created, previous, and its apps",
  usage = "release-info",
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local rel, err = release.current(ctx.paths)
    if err then return nil, err end
    if not rel then
      if ctx.json then
        json.print({ root = ctx.root, release = json.null, apps = json.array() })
      else
        ui.print("no release installed in %s", ctx.root)
      end
      return true
    end
    local tools = runtools.of(rel)
    -- The release nested as status nests it (docs/json.md), with what only
    -- release-info shows; "format" at the top is the output's own.
    local doc = {
      root = ctx.root,
      release = {
        id = rel.id, name = rel.name, version = rel.version, commit = rel.commit or json.null,
        time = rel.time or json.null, created = rel.created, previous = rel.previous or json.null,
        package_format = rel.format, source = rel.source or json.null, signer = rel.signer or json.null,
        runtime = { runc = tools.runc or json.null, umoci = tools.umoci or json.null, from = rel.runtime or json.null },
      },
      apps = json.array(),
    }
    for _, name in ipairs(rel.order) do
      local a = rel.by_name[name]
      doc.apps[#doc.apps + 1] = {
        name = a.name, version = a.version, digest = a.image.digest,
        -- The reference the image was built as, when the package says (a
        -- legacy version.json "image"); else its tag in the package's layout.
        image = a.image.name or a.image.ref or json.null, ref = a.image.ref or json.null,
        commit = a.commit or json.null, built_at = a.built_at or json.null,
      }
    end
    if ctx.json then
      json.print(doc)
      return true
    end
    ui.print("release    %s", rel.id)
    ui.print("name       %s", ui.release_label(rel))
    ui.print("created    %s", rel.created)
    ui.print("previous   %s", rel.previous or "-")
    ui.print("package    %s (%s format)", rel.source or "-", rel.format)
    ui.print("runc       %s (%s)", tools.runc or "not found", rel.runtime and rel.runtime.runc or "host")
    ui.print("umoci      %s (%s)", tools.umoci or "not found", rel.runtime and rel.runtime.umoci or "host")
    ui.print("signed     %s", rel.signer or "no")
    ui.print("")
    local rows = {}
    for _, a in ipairs(doc.apps) do
      rows[#rows + 1] = { a.name, a.version or "-", a.image ~= json.null and a.image or "-", a.digest:sub(1, 19),
        a.commit ~= json.null and a.commit:sub(1, 12) or "-",
        a.built_at ~= json.null and a.built_at or "-" }
    end
    ui.table({ "APP", "VERSION", "IMAGE", "DIGEST", "COMMIT", "BUILT" }, rows)
    return true
  end,
}
