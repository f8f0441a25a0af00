"""Native mode: run the compose topology as local processes under supervisord."""
