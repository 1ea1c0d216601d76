-- wrk script of bench/gateway_compare.py: the flash-sale hold, POST
-- /reservations of one chosen seat. Request i is buyer i's (line i of the
-- tokens file: a member holds one reservation per schedule) for seat i / n
-- of grade i % n of the n grades, named as the inventory names seats
-- ("<grade>-<row>-<number>", rows of 20 from "A": 0001_inventory.sql), so
-- every request asks for a different free seat and every hold is granted.
-- Thread t of T sends requests t, t+T, t+2T, ...
--
--   wrk -t2 -c64 -d5s -s bench/hold.lua URL -- <tokens file> <schedule id> <R,S,A,B> <T>
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tokens, grades = {}, {}
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  schedule = args[2]
  for g in string.gmatch(args[3], "[^,]+") do grades[#grades + 1] = g end
  step = tonumber(args[4])
  k = tid
end

local function seat(grade, j)
  local r, label = math.floor(j / 20) + 1, ""
  while r > 0 do -- bijective base 26: A..Z, AA, AB, ...
    r = r - 1
    label = string.char(65 + r % 26) .. label
    r = math.floor(r / 26)
  end
  return grade .. "-" .. label .. "-" .. (j % 20 + 1)
end

function request()
  local i = k
  k = k + step
  -- past the last buyer the tokens and seats come round again: refused, counted
  local n = #grades
  local body = '{"scheduleId":"' .. schedule .. '","seatIds":["' ..
               seat(grades[(i % n) + 1], math.floor(i / n) % (#tokens)) .. '"]}'
  return wrk.format("POST", "/reservations",
                    {["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1],
                     ["Content-Type"] = "application/json"}, body)
end
