"""What the offline taxi generator models: the real month's shapes, and the SQL that draws trips from them.

taxi.py writes the file; this module only builds the SELECT (deterministic
for a seed) from the weights, rates and factors below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# --- What the generator models --------------------------------------------
# Shapes of the real month (April 2019) as relative weights, rates and
# factors; `generator_sql` turns them into constant lists and CASEs in SQL.

# Relative trips per day of week, Monday first (April 1st 2019 was a Monday).
_DAY_OF_WEEK_WEIGHTS = (0.93, 1.0, 1.04, 1.07, 1.08, 1.02, 0.86)

# Relative trips per hour of day, one profile per kind of day. Weekdays have a
# morning rush and an evening peak; Friday adds a busy night; on Saturday and
# Sunday the small hours carry the night before and mornings are quiet.
_HOUR_PROFILES: dict[str, tuple[float, ...]] = {
    "mon_thu": (
        1.6, 0.9, 0.55, 0.38, 0.36, 0.55, 1.8, 3.4, 4.2, 4.2, 4.0, 4.1,
        4.4, 4.4, 4.7, 4.7, 4.3, 5.0, 5.9, 5.8, 5.0, 4.8, 4.4, 3.2,
    ),
    "fri": (
        1.9, 1.1, 0.7, 0.45, 0.4, 0.55, 1.7, 3.2, 4.0, 4.0, 3.9, 4.0,
        4.3, 4.4, 4.7, 4.7, 4.4, 5.0, 5.8, 5.8, 5.2, 5.4, 5.6, 5.2,
    ),
    "sat": (
        4.4, 3.6, 2.7, 1.9, 1.2, 0.6, 0.6, 0.9, 1.5, 2.3, 3.2, 3.9,
        4.3, 4.5, 4.6, 4.6, 4.5, 4.7, 5.0, 5.1, 4.7, 4.8, 5.2, 5.1,
    ),
    "sun": (
        4.7, 3.9, 3.0, 2.1, 1.4, 0.7, 0.6, 0.8, 1.3, 2.2, 3.2, 3.9,
        4.3, 4.4, 4.4, 4.4, 4.3, 4.3, 4.3, 4.0, 3.5, 3.1, 2.6, 2.0,
    ),
}
_PROFILE_OF_DAY = ("mon_thu",) * 4 + ("fri", "sat", "sun")

# Typical street speed (mph) of a short city trip by hour; longer trips go
# faster (avenues, highways). Weekends have no morning rush.
_WEEKDAY_MPH = (
    11.5, 12.3, 13.2, 14.0, 14.4, 13.6, 11.5, 8.9, 7.2, 7.0, 7.1, 6.9,
    6.8, 6.8, 6.6, 6.5, 6.5, 6.7, 7.1, 8.0, 9.0, 9.6, 10.0, 10.7,
)
_WEEKEND_MPH = (
    10.6, 11.5, 12.3, 13.2, 14.0, 14.4, 14.0, 13.2, 11.9, 10.2, 8.9, 8.1,
    7.6, 7.5, 7.4, 7.4, 7.5, 7.6, 7.9, 8.3, 8.9, 9.3, 9.8, 10.2,
)

# City trips are longer at night and in the early morning (fewer short hops,
# more rides home and to the airports), a little shorter in the day.
_HOUR_DISTANCE_FACTOR = (
    1.25, 1.3, 1.35, 1.4, 1.5, 1.55, 1.3, 1.05, 0.95, 0.92, 0.95, 0.97,
    0.97, 0.97, 0.98, 0.98, 0.97, 0.95, 0.93, 0.95, 1.0, 1.05, 1.1, 1.18,
)

# TLC zone ids 1..265 by popularity. First the Manhattan zones, busiest first,
# with LaGuardia and JFK where their share of pickups puts them; then the
# busier zones of the other boroughs (264 is "Unknown"); then every other zone
# in id order; last the three Manhattan islands and Newark airport, which
# yellow cabs hardly ever pick up from.
JFK, LAGUARDIA, NEWARK = 132, 138, 1
_MANHATTAN_BY_POPULARITY = (
    237, 161, 236, 162, 230, 186, 48, 170, 142, 234, 163, 239, 68, LAGUARDIA, 141, 79,
    107, 140, JFK, 164, 238, 263, 229, 249, 100, 113, 262, 43, 114, 90, 231, 137,
    246, 233, 50, 148, 211, 158, 143, 144, 151, 75, 87, 13, 74, 125, 166, 261,
    88, 232, 41, 209, 45, 24, 4, 224, 42, 152, 116, 244, 12, 127, 243, 120,
    128, 153, 194, 202,
)
_OUTER_BY_POPULARITY = (
    264, 7, 65, 97, 255, 256, 145, 33, 181, 66, 25, 112, 179, 129, 226, 193,
    260, 82, 95, 80, 40, 49, 17, 189, 61, 52, 106, 228, 146, 223, 70, 92,
)
_RAREST = (103, 104, 105, NEWARK)
_ZONES_BY_POPULARITY = _MANHATTAN_BY_POPULARITY + _OUTER_BY_POPULARITY + tuple(
    zone
    for zone in range(1, 266)
    if zone not in _MANHATTAN_BY_POPULARITY + _OUTER_BY_POPULARITY + _RAREST
) + _RAREST
_CITY_CORE_RANKS = len(_MANHATTAN_BY_POPULARITY)
"""Zones of popularity rank 1.._CITY_CORE_RANKS are Manhattan (or an airport)."""

# Each zone's own typical trip length, 0.6..1.4 times that of its kind of
# trip: a fixed stand-in for where in the city the zone lies (by rank). A
# city trip's length leans 70:30 on its pickup zone's over its dropoff zone's.
_ZONE_TRIP_LENGTH = tuple(
    round(0.6 + 0.8 * ((rank * 0.6180339887) % 1), 3) for rank in range(1, len(_ZONES_BY_POPULARITY) + 1)
)

# Odd rows as in the real data: trips of zero distance that end where they began.
_ZERO_DISTANCE_SHARE = 0.008

# One independent uniform draw per random decision of a trip, two to a hash.
# A draw that picks a branch is rescaled within it to drive that branch too.
_DRAWS = (
    "vendor", "hour", "second", "pickup", "dropoff", "dist_r", "dist_theta",
    "odd", "passengers", "rate", "payment", "tip", "toll", "congestion",
)


def generator_sql(seed: int) -> str:
    """SELECT producing one plausible trip per row `i` of table trip_ids, with the SCHEMA names.

    The stages, each a CTE: uniform draws; the hour of the month (day of week
    times that day's hourly profile); pickup and dropoff zones by popularity;
    the distance from the kind of trip (airport, within Manhattan, ...), the
    hour and the zones; the duration from distance, hour and weekday; the fare
    from distance and duration (or the airport rate); tips by payment type;
    the total from its parts.
    """
    # hash(i, seed) XOR k, hashed again: DuckDB combines hash(a, b, k) by XOR,
    # which would make draws for different k mere bit flips of each other.
    # Each such hash gives two 32-bit uniforms, its high and its low half.
    hashes = ",\n".join(
        f"hash(xor(key, {k}::UBIGINT)) AS h{k}" for k in range(1, (len(_DRAWS) + 1) // 2 + 1)
    )
    draws = ",\n".join(
        f"((h{n // 2 + 1} {'>> 32' if n % 2 == 0 else '& 4294967295'})::DOUBLE + 0.5) / 4294967296.0 AS u_{name}"
        for n, name in enumerate(_DRAWS)
    )
    # one draw picks the hour of the month: day of week times that day's profile
    hour_of_month = _alias_pick("u_hour", [
        _DAY_OF_WEEK_WEIGHTS[day % 7] * weight / sum(profile)
        for day in range(30)
        for profile in [_HOUR_PROFILES[_PROFILE_OF_DAY[day % 7]]]
        for weight in profile
    ])
    zones = _sql_list(_ZONES_BY_POPULARITY)
    trip_length = _sql_list(_ZONE_TRIP_LENGTH)
    # Pickups: 82% from a Manhattan-heavy head (exponential in rank), 12% Zipf
    # over all ranks (the heavy tail), 6% uniform so that every zone occurs.
    pickup_rank = _alias_pick(
        "u_pickup", _popularity([(0.82, "exp", 20.0), (0.12, "zipf", 0), (0.06, "uniform", 0)])
    )
    # Dropoffs spread further out, and some go to Newark airport (the last rank).
    dropoff_rank = _alias_pick(
        "u_dropoff",
        _popularity([(0.0025, "last", 0), (0.7475, "exp", 24.0), (0.15, "zipf", 0), (0.10, "uniform", 0)]),
    )
    airports = f"({JFK}, {LAGUARDIA})"
    # log-normal distance (median miles, sigma) by kind of trip, the city kinds
    # (the last three) scaled by hour, weekend and zone
    kinds = (
        (f"airport = {JFK} AND city_end", 17.5, 0.12),
        (f"airport = {JFK}", 10.0, 0.45),
        (f"airport = {LAGUARDIA} AND city_end", 9.5, 0.2),
        (f"airport = {LAGUARDIA}", 6.0, 0.5),
        (f"airport = {NEWARK}", 17.5, 0.15),
        ("pickup_city AND dropoff_city", 1.3, 0.7),  # within Manhattan
        ("pickup_city OR dropoff_city", 3.2, 0.6),  # to or from Manhattan
        ("true", 2.6, 0.8),  # elsewhere
    )
    kind = "CASE " + " ".join(f"WHEN {test} THEN {k}" for k, (test, _, _) in enumerate(kinds[:-1]))
    kind += f" ELSE {len(kinds) - 1} END"
    median = (
        f"{_sql_list([m for _, m, _ in kinds])}[kind + 1]"
        f" * CASE WHEN kind >= {len(kinds) - 3} THEN city_scale ELSE 1.0 END"
    )
    sigma = f"{_sql_list([s for _, _, s in kinds])}[kind + 1]"
    street_mph = (
        f"CASE WHEN weekend THEN {_sql_list(_WEEKEND_MPH)}[hour + 1] ELSE {_sql_list(_WEEKDAY_MPH)}[hour + 1] END"
    )
    tip_share = (
        "CASE WHEN u_tip < 0.08 THEN 0.0 WHEN u_tip < 0.45 THEN 0.20 WHEN u_tip < 0.65 THEN 0.25 "
        "WHEN u_tip < 0.74 THEN 0.30 ELSE 0.08 + 0.17 * (u_tip - 0.74) / 0.26 END"
    )

    return f"""
WITH keys AS (
    SELECT hash(i, {seed}) AS key FROM trip_ids
),
draws AS (
    SELECT {draws} FROM (SELECT {hashes} FROM keys)
),
hours AS (
    -- day 0 is Monday April 1st 2019
    SELECT *, hour_of_month // 24 AS day, hour_of_month % 24 AS hour, (hour_of_month // 24) % 7 >= 5 AS weekend
    FROM (SELECT *, {hour_of_month} AS hour_of_month FROM draws)
),
ranks AS (
    SELECT
        *,
        -- odd rows: zero-distance trips that end in the zone they started in
        u_odd < {_ZERO_DISTANCE_SHARE!r} AS zero_distance,
        {pickup_rank} + 1 AS pickup_rank,
        {dropoff_rank} + 1 AS dropoff_rank_drawn
    FROM hours
),
zones AS (
    SELECT
        *,
        {zones}[pickup_rank] AS pickup_location_id,
        {zones}[dropoff_rank] AS dropoff_location_id
    FROM (SELECT *, CASE WHEN zero_distance THEN pickup_rank ELSE dropoff_rank_drawn END AS dropoff_rank FROM ranks)
),
ends AS (
    SELECT
        *,
        CASE WHEN pickup_location_id = {JFK} OR dropoff_location_id = {JFK} THEN {JFK}
             WHEN pickup_location_id = {LAGUARDIA} OR dropoff_location_id = {LAGUARDIA} THEN {LAGUARDIA}
             WHEN pickup_location_id = {NEWARK} OR dropoff_location_id = {NEWARK} THEN {NEWARK}
             ELSE 0 END AS airport,
        pickup_rank <= {_CITY_CORE_RANKS} AND pickup_location_id NOT IN {airports} AS pickup_city,
        dropoff_rank <= {_CITY_CORE_RANKS} AND dropoff_location_id NOT IN {airports} AS dropoff_city,
        -- two independent standard normals (Box-Muller)
        sqrt(-2 * ln(u_dist_r)) * cos(2 * pi() * u_dist_theta) AS z_distance,
        sqrt(-2 * ln(u_dist_r)) * sin(2 * pi() * u_dist_theta) AS z_speed
    FROM zones
),
airport_ends AS (
    SELECT
        *,
        -- for an airport trip, is the other end in Manhattan?
        CASE WHEN pickup_location_id = airport THEN dropoff_city ELSE pickup_city END AS city_end,
        -- city trips: longer at night and at weekends, and from and to some zones
        {_sql_list(_HOUR_DISTANCE_FACTOR)}[hour + 1] * CASE WHEN weekend THEN 1.08 ELSE 1.0 END
            * (0.7 * {trip_length}[pickup_rank] + 0.3 * {trip_length}[dropoff_rank]) AS city_scale
    FROM ends
),
distances AS (
    SELECT *, {kind} AS kind FROM airport_ends
),
trips AS (
    SELECT
        *,
        CASE WHEN zero_distance THEN 0.0
             ELSE greatest(round(least({median} * exp({sigma} * z_distance), 60), 2), 0.01) END
            AS trip_distance,
        CASE WHEN airport = {JFK} AND city_end THEN '2'  -- JFK-Manhattan flat fare
             WHEN airport = {NEWARK} AND NOT zero_distance THEN '3'
             WHEN u_rate < 0.004 THEN '5'               -- negotiated
             ELSE '1' END AS rate_code_id,
        NOT weekend AND hour BETWEEN 16 AND 19 AS peak
    FROM distances
),
durations AS (
    SELECT
        *,
        TIMESTAMP '2019-04-01' + to_seconds(
            day * 86400 + hour * 3600 + CAST(floor(u_second * 3600) AS BIGINT)
        ) AS pickup_at,
        -- card more often to and from the airports; a trip that went nowhere
        -- (a glitch of the meter feed) is on the card; disputes are over real rides
        CASE WHEN zero_distance THEN '1'
             WHEN u_payment < CASE WHEN airport > 0 THEN 0.80 ELSE 0.70 END THEN '1'
             WHEN u_payment < 0.992 THEN '2' WHEN u_payment < 0.997 OR trip_distance < 1 THEN '3'
             ELSE '4' END AS payment_type,
        -- the street speed of the hour, up to 3.5 times that on long (highway)
        -- trips, +-22% from trip to trip; 45 seconds to get going
        CASE WHEN zero_distance THEN 20 + CAST(floor(u_odd / {_ZERO_DISTANCE_SHARE!r} * 580) AS BIGINT)
             ELSE least(45 + CAST(round(trip_distance / least(
                        {street_mph} * (1 + 2.5 * trip_distance / (trip_distance + 8)) * exp(0.22 * z_speed), 40)
                        * 3600) AS BIGINT), 7000) END AS duration_s
    FROM trips
),
metered AS (
    SELECT
        *,
        -- the meter: $2.50, then $2.50 a mile, plus 50 cents a minute in slow
        -- traffic (time beyond 5 minutes a mile, i.e. below 12 mph), in 50-cent steps
        round((2.5 + 2.5 * trip_distance + 0.5 * greatest(duration_s / 60 - 5 * trip_distance, 0)) * 2) / 2
            AS meter
    FROM durations
),
fares AS (
    SELECT
        *,
        CASE rate_code_id WHEN '2' THEN 52.0
                          WHEN '3' THEN meter + 17.5  -- Newark surcharge
                          WHEN '5' THEN greatest(10, round(meter / 5) * 5)
                          ELSE meter END AS fare_amount,
        -- weekday 4-8pm $1 ($4.50 on the JFK flat fare), overnight 8pm-6am 50 cents
        CASE WHEN rate_code_id = '2' THEN CASE WHEN peak THEN 4.5 ELSE 0.0 END
             WHEN peak THEN 1.0 WHEN hour >= 20 OR hour < 6 THEN 0.5 ELSE 0.0 END AS extra,
        0.5 AS mta_tax,
        0.3 AS improvement_surcharge,
        CASE airport WHEN {JFK} THEN CASE WHEN u_toll < 0.40 THEN 5.76 ELSE 0.0 END
                     WHEN {LAGUARDIA} THEN CASE WHEN u_toll < 0.35 THEN 5.76 ELSE 0.0 END
                     WHEN {NEWARK} THEN CASE WHEN u_toll < 0.85 THEN 12.5 ELSE 0.0 END
                     ELSE CASE WHEN (trip_distance > 8 AND u_toll < 0.3) OR (u_toll < 0.003 AND NOT zero_distance)
                               THEN 5.76 ELSE 0.0 END END AS tolls_amount,
        -- trips touching Manhattan pay the congestion surcharge
        CASE WHEN ((pickup_city OR dropoff_city) AND u_congestion < 0.97) OR u_congestion < 0.03
             THEN 2.5 ELSE 0.0 END AS congestion_surcharge
    FROM metered
),
tipped AS (
    SELECT
        *,
        -- only card tips are recorded: mostly the screen's 20/25/30%, else 8-25%, some none
        CASE WHEN payment_type = '1' THEN round(fare_amount * ({tip_share}), 2) ELSE 0.0 END AS tip_amount
    FROM fares
)
SELECT
    CASE WHEN u_vendor < 0.35 THEN '1' ELSE '2' END AS vendor_id,
    pickup_at,
    pickup_at + to_seconds(duration_s) AS dropoff_at,
    CASE WHEN u_passengers < 0.70 THEN 1 WHEN u_passengers < 0.84 THEN 2 WHEN u_passengers < 0.88 THEN 3
         WHEN u_passengers < 0.90 THEN 4 WHEN u_passengers < 0.96 THEN 5 ELSE 6 END AS passenger_count,
    trip_distance,
    rate_code_id,
    -- only vendor 1 stores and forwards
    CASE WHEN u_vendor < 0.35 * 0.025 THEN 'Y' ELSE 'N' END AS store_and_fwd_flag,
    pickup_location_id,
    dropoff_location_id,
    payment_type,
    fare_amount,
    extra,
    mta_tax,
    tip_amount,
    tolls_amount,
    improvement_surcharge,
    round(fare_amount + extra + mta_tax + tip_amount + tolls_amount + improvement_surcharge
          + congestion_surcharge, 2) AS total_amount,
    congestion_surcharge
FROM tipped
"""


def _sql_list(values: Sequence[float]) -> str:
    return "[" + ", ".join(map(repr, values)) + "]"


def _alias_pick(draw: str, weights: Sequence[float]) -> str:
    """Expression giving k with probability weights[k] / sum(weights), for a uniform `draw`.

    Walker's alias method: the draw picks one of n equally likely cells and,
    by its remaining fraction, either the cell's own k or the cell's alias.
    That is two look-ups in constant lists per row, whatever n is.
    """
    n = len(weights)
    total = sum(weights)
    scaled = [w * n / total for w in weights]
    keep = [1.0] * n
    alias = list(range(n))
    small = [k for k, w in enumerate(scaled) if w < 1.0]
    large = [k for k, w in enumerate(scaled) if w >= 1.0]
    while small and large:
        s_k, l_k = small.pop(), large[-1]
        keep[s_k], alias[s_k] = scaled[s_k], l_k
        scaled[l_k] -= 1.0 - scaled[s_k]
        if scaled[l_k] < 1.0:
            small.append(large.pop())
    # what is left is 1 up to rounding: those cells keep their own k
    cell = f"least(CAST(floor({draw} * {n}) AS INTEGER), {n - 1})"
    return (
        f"CASE WHEN {draw} * {n} - {cell} < {_sql_list(keep)}[{cell} + 1] THEN {cell} "
        f"ELSE {_sql_list(alias)}[{cell} + 1] END"
    )


def _popularity(parts: Sequence[tuple[float, str, float]]) -> list[float]:
    """Probability of each popularity rank 1..265 (list index 0..264) under a mixture.

    Each part is (share, kind, scale): "exp" (P(rank k) falls by e every
    `scale` ranks), "zipf" (P(rank k) ~ ln((k+1)/k), a heavy tail), "uniform",
    or "last" (only the rarest zone).
    """
    n = len(_ZONES_BY_POPULARITY)
    ranks = range(1, n + 1)
    shapes = {
        "exp": lambda scale: [math.exp(-(k - 1) / scale) - math.exp(-k / scale) for k in ranks],
        "zipf": lambda _: [math.log((k + 1) / k) for k in ranks],
        "uniform": lambda _: [1.0] * n,
        "last": lambda _: [0.0] * (n - 1) + [1.0],
    }
    weights = [0.0] * n
    for share, kind, scale in parts:
        shape = shapes[kind](scale)
        total = sum(shape)
        weights = [w + share * x / total for w, x in zip(weights, shape)]
    return weights
