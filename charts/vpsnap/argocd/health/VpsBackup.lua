-- Argo CD health check for vpsnap.dev/VpsBackup.
-- Source of truth for the `resource.customizations.health.vpsnap.dev_VpsBackup` key of argocd-cm
-- (scripts/sync-manifests.sh copies it into argocd-cm-snippet.yaml). Argo CD runs it with
-- gopher-lua (Lua 5.1) and only the safe libraries: plain Lua, no string/os helpers.
-- Tested against argocd/fixtures/VpsBackup/ by tests/argocd_health.rs.
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

-- Evicted: vpsnap's garbage collection deleted the provider data to make room, as
-- `evictable: true` allowed. That is the user's policy at work, not a fault, so it must not
-- turn the Application Degraded. Checked before Stalled: objects evicted by earlier versions
-- carry Stalled=True.
local ready = condition(status.conditions, "Ready")
local evicted = status.phase == "Evicted"
if ready ~= nil and ready.status == "False" and ready.reason == "Evicted" then
  evicted = true
end
if evicted then
  hs.status = "Healthy"
  hs.message = "Evicted (evictable: true): " .. describe(ready, "evicted to make room on the server") .. ". Its provider data is gone; delete this object or drop it from Git."
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- Reasons the controller cannot get past without a change of spec, Secret or limits.
local final = {
  LimitReached = true,
  CredentialsInvalid = true,
  SecretMissing = true,
  Unsupported = true,
  InvalidSpec = true,
}

if ready ~= nil and ready.status == "False" and ready.reason ~= nil and final[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, ready.reason)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready, "Waiting for Ready")
else
  hs.message = describe(condition(status.conditions, "Reconciling"), "Waiting for Ready")
end
return hs
