!! Minimal test helpers: count checks, report failures, exit non-zero if any failed.
module fkb_testing
  use iso_fortran_env, only: real32, real64, int32, int64, output_unit
  implicit none
  private
  public :: check, finish, close_enough, read_f64, case_t, read_cases, write_fkb

  integer :: n_pass = 0, n_fail = 0

  type :: case_t
    character(len=:), allocatable :: name, dtype
    integer(int64) :: n_in, n_out, n
    integer(int64), allocatable :: in_sizes(:), out_sizes(:)   !! per input/output
  end type case_t

contains

  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (ok) then
      n_pass = n_pass + 1
    else
      n_fail = n_fail + 1
      write (output_unit, '(a)') 'FAIL: ' // what
    end if
  end subroutine check

  subroutine finish()
    write (output_unit, '(i0,a,i0,a)') n_pass, ' passed, ', n_fail, ' failed'
    if (n_fail > 0) error stop 1
  end subroutine finish

  pure real(real64) function close_enough(a, b, atol, rtol) result(worst)
    !! max over elements of |a-b| / (atol + rtol*|b|): <= 1 means within tolerance.
    real(real64), intent(in) :: a(:, :), b(:, :), atol, rtol
    real(real64) :: ratio(size(a, 1), size(a, 2))
    ratio = abs(a - b) / (atol + rtol * abs(b))
    worst = maxval(ratio)
    if (.not. all(ratio <= worst)) worst = huge(worst)   ! a NaN where b is a number fails
  end function close_enough

  subroutine read_f64(path, x)
    !! Reads raw little-endian float64 values into x (sized by the caller).
    character(len=*), intent(in) :: path
    real(real64), intent(out) :: x(:, :)
    integer :: u
    open (newunit=u, file=path, access='stream', form='unformatted', status='old', action='read')
    read (u) x
    close (u)
  end subroutine read_f64

  subroutine read_cases(dir, cases, all)
    !! Parses dir/cases.txt: `name dtype n_in n_out n [IN_SIZES OUT_SIZES]` per line, the
    !! optional columns listing the flat size of each input and output (comma-separated).
    !! Without `all`, only the cases with one input and one output of rank 1 (no optional
    !! columns) are returned: the tests written for chains use those.
    character(len=*), intent(in) :: dir
    type(case_t), allocatable, intent(out) :: cases(:)
    logical, intent(in), optional :: all
    character(len=4096) :: line
    character(len=256) :: f(7)
    integer :: u, ios, nf, i0, k
    logical :: want_all
    want_all = .false.
    if (present(all)) want_all = all
    allocate(cases(0))
    open (newunit=u, file=dir // '/cases.txt', status='old', action='read')
    do
      read (u, '(a)', iostat=ios) line
      if (ios /= 0) exit
      nf = 0
      i0 = 1
      f = ''
      do k = 1, len_trim(line) + 1
        if (k > len_trim(line) .or. line(k:k) == ' ') then
          if (k > i0 .and. nf < 7) then
            nf = nf + 1
            f(nf) = line(i0:k - 1)
          end if
          i0 = k + 1
        end if
      end do
      if (nf < 5 .or. (nf > 5 .and. .not. want_all)) cycle
      cases = [cases, case_t(name=trim(f(1)), dtype=trim(f(2)), n_in=to_int(f(3)), &
                             n_out=to_int(f(4)), n=to_int(f(5)))]
      associate (c => cases(size(cases)))
        if (nf >= 7) then
          c%in_sizes = ints(f(6))
          c%out_sizes = ints(f(7))
        else
          c%in_sizes = [c%n_in]
          c%out_sizes = [c%n_out]
        end if
      end associate
    end do
    close (u)
  contains
    integer(int64) function to_int(t)
      character(len=*), intent(in) :: t
      read (t, *) to_int
    end function to_int
    function ints(t) result(v)
      character(len=*), intent(in) :: t
      integer(int64), allocatable :: v(:)
      integer :: n, j
      n = 1
      do j = 1, len_trim(t)
        if (t(j:j) == ',') n = n + 1
      end do
      allocate(v(n))
      read (t, *) v
    end function ints
  end subroutine read_cases


  subroutine write_fkb(path, header, data_bytes, major)
    ! Writes a .fkb file by hand: the given header and data_bytes bytes of float data (0.25 each).
    character(len=*), intent(in) :: path, header
    integer, intent(in) :: data_bytes
    integer, intent(in), optional :: major
    integer :: u, maj
    character(len=:), allocatable :: data
    maj = 1
    if (present(major)) maj = major
    data = repeat(transfer(0.25_real32, 'abcd'), (data_bytes + 3) / 4)
    open (newunit=u, file=path, access='stream', form='unformatted', status='replace')
    write (u) char(137) // 'FKB' // achar(13) // achar(10) // achar(26) // achar(10), &
              int(maj, int32), 0_int32, int(len(header), int64), header, data(1:data_bytes)
    close (u)
  end subroutine write_fkb

end module fkb_testing
