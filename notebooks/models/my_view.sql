SELECT *
FROM trips_by_pickup_location
ORDER BY trips DESC, pickup_location_id
LIMIT 200
