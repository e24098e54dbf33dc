-- Argo CD health check for vpsnap.dev/VpsRestore.
-- Source of truth for the `resource.customizations.health.vpsnap.dev_VpsRestore` key of argocd-cm
-- (scripts/sync-manifests.sh copies it into argocd-cm-snippet.yaml). Argo CD runs it with
-- gopher-lua (Lua 5.1) and only the safe libraries: plain Lua, no string/os helpers.
-- Tested against argocd/fixtures/VpsRestore/ by tests/argocd_health.rs.
local hs = {}

local function condition(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

-- The condition's message, else its reason, else the fallback.
local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the vpsnap controller to report status"
  return hs
end

-- Status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the vpsnap controller to observe the latest spec"
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- A restore runs at most once: Succeeded=True or Succeeded=False is final.
local succeeded = condition(status.conditions, "Succeeded")
if succeeded ~= nil and succeeded.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(succeeded, "Restore succeeded")
  return hs
end
if succeeded ~= nil and succeeded.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(succeeded, "Restore failed")
  return hs
end

hs.status = "Progressing"
if succeeded ~= nil then
  hs.message = describe(succeeded, "Restore in progress")
else
  hs.message = describe(condition(status.conditions, "Reconciling"), "Restore in progress")
end
return hs
