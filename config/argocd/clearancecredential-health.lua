-- Argo CD health check for clearance.dev/ClearanceCredential.
-- Install it as resource.customizations.health.clearance.dev_ClearanceCredential
-- in the argocd-cm ConfigMap (see the README, "GitOps health").
--
-- Healthy:     Ready=True (a valid token is in the target Secret).
-- Degraded:    Stalled=True (the operator needs a change to the spec, the
--              connection file or the STS-side key), or the stored token
--              has expired (reason TokenExpired).
-- Suspended:   spec.suspend is true.
-- Progressing: anything else, e.g. the first token is being requested, or
--              the operator has not seen the latest spec yet.
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local conditions = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  conditions = obj.status.conditions
end

if #conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  local ready = condition(conditions, "Ready")
  if ready ~= nil then
    hs.message = describe(ready)
  else
    hs.message = "Minting is suspended (spec.suspend)"
  end
  return hs
end

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

for _, c in ipairs(conditions) do
  if c.reason == "TokenExpired" then
    hs.status = "Degraded"
    hs.message = describe(c)
    return hs
  end
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
