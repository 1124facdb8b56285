CREATE EXTENSION anomstream;
SELECT anomstream.reformat('224.2M'), anomstream.try_reformat('12Q');
