SELECT pickup_location_id, count(*) AS trips, round(sum(total_amount), 2) AS revenue
FROM taxi_2019_04
GROUP BY pickup_location_id
