-- Every day from the first order day to the horizon: the spine of the daily feature grids.
{{ calendar_days('first_date', 'as_of_date', ref('int_data_horizon')) }}
